import Logging
import NIOCore

/// Asks the sentinels for a master, connects to it and checks that it is one.
///
/// Runs at every connection attempt, so a client or subscriber that lost its connection finds the master
/// the sentinels name now. The sentinels are asked in their configured order; the first that names a master
/// which answers `ROLE` with `master` wins. When none does (a failover still running, say), the error lists
/// what each sentinel said and is retryable, so the caller's backoff tries again.
struct RedisSentinelResolver {
    let configuration: RedisConfiguration
    let sentinel: RedisConfiguration.Sentinel
    let eventLoopGroup: any EventLoopGroup
    let logger: Logger

    /// What one sentinel told us about the master, or why not.
    enum Answer {
        case master(host: String, port: Int)
        case unknownMaster
    }

    func connectToMaster() async throws(RedisError) -> RedisConnection {
        guard !sentinel.endpoints.isEmpty else {
            throw RedisError(.invalidURL, "no sentinels configured for master '\(sentinel.masterName)'; list them as redis-sentinel://host:26379,host:26380/\(sentinel.masterName)")
        }
        var notes: [String] = []
        var unknown = 0
        var allRefused = true
        var fatal: RedisError?
        for (index, endpoint) in sentinel.endpoints.enumerated() {
            let answer: Answer
            do {
                answer = try await ask(endpoint)
            } catch {
                if !error.isRetryable, fatal == nil { fatal = error }
                if error.code != .connectionRefused { allRefused = false }
                notes.append("sentinel \(endpoint): \(error.message)")
                continue
            }
            guard case .master(let host, let port) = answer else {
                unknown += 1
                allRefused = false
                notes.append("sentinel \(endpoint) monitors no master named '\(sentinel.masterName)'")
                continue
            }
            let server = RedisConfiguration.Address.tcp(host: host, port: port)
            let connection: RedisConnection
            do {
                connection = try await RedisConnection.connect(
                    configuration: configuration, server: server, eventLoopGroup: eventLoopGroup, logger: logger
                )
            } catch {
                // The master's own credentials or TLS are wrong: every sentinel would lead to the same refusal.
                if !error.isRetryable { throw error }
                if error.code != .connectionRefused { allRefused = false }
                notes.append("sentinel \(endpoint) named \(server): \(error.message)")
                continue
            }
            allRefused = false
            switch await role(of: connection) {
            case .master, .unchecked:
                break
            case .other(let role):
                await connection.close()
                notes.append("sentinel \(endpoint) named \(server), which is a \(role) now (a failover in progress?)")
                continue
            case .failed(let error):
                await connection.close()
                notes.append("sentinel \(endpoint) named \(server), which failed ROLE: \(error.message)")
                continue
            }
            logger.debug(
                "sentinel named the master",
                metadata: ["master": "\(sentinel.masterName)", "server": "\(server)", "sentinel": "\(endpoint)"]
            )
            RedisSentinelWatcher.start(
                watching: connection, host: host, port: port, sentinel: sentinel, firstSentinel: index,
                configuration: sentinelConfiguration, eventLoopGroup: eventLoopGroup, logger: logger
            )
            return connection
        }
        if unknown == sentinel.endpoints.count {
            throw RedisError(
                .sentinelMasterUnknown,
                "no sentinel at \(sentinel.endpoints.map(\.description).joined(separator: ",")) monitors a master named '\(sentinel.masterName)': check the name after the sentinel addresses in the URL (SENTINEL MASTERS on a sentinel lists them)"
            )
        }
        if let fatal { throw fatal }
        throw RedisError(
            allRefused ? .connectionRefused : .connectionFailed,
            "could not reach Redis master '\(sentinel.masterName)' through the sentinels: \(notes.joined(separator: "; ")); retrying after a failover takes the sentinels' down-after-milliseconds plus an election"
        )
    }

    /// `SENTINEL GET-MASTER-ADDR-BY-NAME` on one sentinel.
    private func ask(_ endpoint: RedisConfiguration.Sentinel.Endpoint) async throws(RedisError) -> Answer {
        let connection: RedisConnection
        do {
            connection = try await RedisConnection.connect(
                configuration: sentinelConfiguration(endpoint),
                server: .tcp(host: endpoint.host, port: endpoint.port),
                eventLoopGroup: eventLoopGroup,
                logger: logger
            )
        } catch where error.code == .authenticationFailed || error.code == .authenticationRequired {
            throw RedisError(
                error.code,
                "the sentinel refused the credentials (\(error.serverMessage ?? error.message)): the URL's user and password are the master's; give the sentinels' with sentinel_password= (and sentinel_username=)",
                serverMessage: error.serverMessage
            )
        }
        let reply: RedisReply
        do {
            reply = try await connection.send("SENTINEL", "GET-MASTER-ADDR-BY-NAME", .string(sentinel.masterName))
        } catch {
            await connection.close()
            if error.code == .errorReply {
                throw RedisError(
                    .protocolError,
                    "\(endpoint) did not answer SENTINEL GET-MASTER-ADDR-BY-NAME (\(error.serverMessage ?? error.message)): is it a sentinel (port 26379 by default) rather than a Redis server?",
                    serverMessage: error.serverMessage
                )
            }
            throw error
        }
        await connection.close()
        switch reply {
        case .null:
            return .unknownMaster
        case .array(let parts) where parts.count == 2:
            guard let host = parts[0].string, let port = parts[1].integer, (1...65535).contains(port) else { break }
            return .master(host: host, port: Int(port))
        default:
            break
        }
        throw RedisError(.protocolError, "sentinel \(endpoint) answered SENTINEL GET-MASTER-ADDR-BY-NAME with \(reply), not [host, port]")
    }

    enum Role {
        case master
        /// `slave` or `sentinel`.
        case other(String)
        /// The server refused `ROLE` (an ACL user without `+role`): the sentinels are trusted, and a `READONLY`
        /// reply later triggers the reconnect.
        case unchecked
        case failed(RedisError)
    }

    private func role(of connection: RedisConnection) async -> Role {
        do {
            let reply = try await connection.send("ROLE")
            guard let role = reply.array?.first?.string else {
                return .failed(RedisError(.protocolError, "ROLE answered \(reply), not [role, ...]"))
            }
            return role == "master" ? .master : .other(role)
        } catch where error.code == .errorReply {
            logger.debug("could not check ROLE; trusting the sentinels", metadata: ["error": "\(error.message)"])
            return .unchecked
        } catch {
            return .failed(error)
        }
    }

    /// How to talk to a sentinel: its own credentials, the master's TLS settings, no database or client name.
    var sentinelConfiguration: @Sendable (RedisConfiguration.Sentinel.Endpoint) -> RedisConfiguration {
        { [configuration, sentinel] endpoint in
            RedisConfiguration(
                address: .tcp(host: endpoint.host, port: endpoint.port),
                username: sentinel.username,
                password: sentinel.password,
                database: 0,
                connectTimeout: configuration.connectTimeout,
                commandTimeout: configuration.commandTimeout ?? configuration.connectTimeout,
                clientName: nil,
                tls: configuration.tls
            )
        }
    }
}
