import Foundation
import HiredisClient

/// A primary, replicas and sentinels on loopback, every one a real `redis-server` process, for failover tests.
///
/// ``start(masterName:replicas:sentinels:downAfter:sentinelPassword:tls:)`` returns once every sentinel knows the replicas and the
/// other sentinels, so that killing the primary leads to a failover (a quorum of 2 and a majority vote).
public final class RedisSentinelTopology: Sendable {
    /// The name the sentinels monitor the primary under.
    public let masterName: String
    /// The servers: the first is the primary at start.
    public let servers: [RedisServer]
    /// The sentinels (`redis-server sentinel.conf --sentinel`).
    public let sentinels: [RedisServer]
    /// The folder with the sentinels' config files.
    public let directory: URL
    /// The sentinels' `requirepass`, if any.
    public let sentinelPassword: String?
    /// The CA and certificates when every server and sentinel also listens with TLS and they talk TLS among
    /// themselves (`tls-replication yes`): the sentinels then name TLS ports.
    public let tls: RedisTLSFixture?
    /// The TLS port of each server and sentinel, by its plain port (empty without TLS).
    private let tlsPorts: [Int: Int]

    private init(
        masterName: String,
        servers: [RedisServer],
        sentinels: [RedisServer],
        directory: URL,
        sentinelPassword: String?,
        tls: RedisTLSFixture?,
        tlsPorts: [Int: Int]
    ) {
        self.masterName = masterName
        self.servers = servers
        self.sentinels = sentinels
        self.directory = directory
        self.sentinelPassword = sentinelPassword
        self.tls = tls
        self.tlsPorts = tlsPorts
    }

    /// The port the sentinels name for `server` (its TLS port in a TLS topology) and clients connect to.
    public func announcedPort(_ server: RedisServer) -> Int {
        tlsPorts[server.port] ?? server.port
    }

    /// `redis-sentinel://127.0.0.1:S1,127.0.0.1:S2,.../NAME`, or `rediss-sentinel://...?ca=...` with TLS.
    public var url: String {
        let hosts = sentinels.map { "127.0.0.1:\(announcedPort($0))" }.joined(separator: ",")
        if let tls { return "rediss-sentinel://\(hosts)/\(masterName)?ca=\(tls.caFile)" }
        return "redis-sentinel://\(hosts)/\(masterName)"
    }

    /// A configuration for ``url`` with short timeouts suited to tests.
    public func configuration(connectTimeout: Duration = .seconds(2), commandTimeout: Duration? = .seconds(5)) throws -> RedisConfiguration {
        var configuration = try RedisConfiguration(url: url)
        configuration.connectTimeout = connectTimeout
        configuration.commandTimeout = commandTimeout
        return configuration
    }

    /// Starts the primary, `replicas` replicas of it and `sentinels` sentinels (quorum 2), and waits until the
    /// replicas are in sync and the sentinels know each other.
    /// - Parameters:
    ///   - downAfter: the sentinels' `down-after-milliseconds`: how long the primary must be silent
    ///     before a failover starts.
    ///   - sentinelPassword: the sentinels' `requirepass` (they use it with each other too).
    ///   - tls: serve TLS with this fixture's certificates too, replicate and monitor over TLS.
    public static func start(
        masterName: String = "mymaster",
        replicas: Int = 1,
        sentinels sentinelCount: Int = 3,
        downAfter: Duration = .seconds(1),
        sentinelPassword: String? = nil,
        tls: RedisTLSFixture? = nil
    ) async throws -> RedisSentinelTopology {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("swift-channels-sentinel-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var tlsPorts: [Int: Int] = [:]
        /// Starts one process, with a TLS port as well when the topology has TLS.
        func start(password: String? = nil, arguments: [String], configFile: String? = nil) async throws -> RedisServer {
            guard let tls else { return try await RedisServer.start(password: password, arguments: arguments, configFile: configFile) }
            let tlsPort = try freePort()
            let server = try await RedisServer.start(
                password: password,
                arguments: arguments + tls.serverArguments(tlsPort: tlsPort) + ["--tls-replication", "yes"],
                configFile: configFile
            )
            tlsPorts[server.port] = tlsPort
            return server
        }
        let primary = try await start(arguments: [])
        let primaryPort = tlsPorts[primary.port] ?? primary.port
        var servers = [primary]
        for _ in 0..<replicas {
            servers.append(try await start(arguments: ["--replicaof", "127.0.0.1", String(primaryPort)]))
        }
        for replica in servers.dropFirst() {
            try await waitFor("replica on port \(replica.port) in sync with the primary") {
                let info = try await command(replica, ["INFO", "replication"]).string ?? ""
                return info.contains("master_link_status:up")
            }
        }
        let downAfterMilliseconds = Int(downAfter / .milliseconds(1))
        var sentinels: [RedisServer] = []
        for index in 0..<sentinelCount {
            let file = directory.appendingPathComponent("sentinel-\(index).conf")
            let config = """
                sentinel monitor \(masterName) 127.0.0.1 \(primaryPort) 2
                sentinel down-after-milliseconds \(masterName) \(downAfterMilliseconds)
                sentinel failover-timeout \(masterName) \(max(2 * downAfterMilliseconds, 3000))
                sentinel parallel-syncs \(masterName) 1

                """
            try config.write(to: file, atomically: true, encoding: .utf8)
            sentinels.append(
                try await start(password: sentinelPassword, arguments: ["--sentinel", "--protected-mode", "no"], configFile: file.path)
            )
        }
        let topology = RedisSentinelTopology(
            masterName: masterName, servers: servers, sentinels: sentinels, directory: directory,
            sentinelPassword: sentinelPassword, tls: tls, tlsPorts: tlsPorts
        )
        for sentinel in sentinels {
            try await waitFor("sentinel on port \(sentinel.port) to see \(replicas) replica(s) and \(sentinelCount - 1) other sentinel(s)") {
                let known = try await command(sentinel, ["SENTINEL", "SENTINELS", masterName]).array?.count ?? 0
                let replicaCount = try await command(sentinel, ["SENTINEL", "REPLICAS", masterName]).array?.count ?? 0
                return known == sentinelCount - 1 && replicaCount == replicas
            }
        }
        return topology
    }

    /// The port the sentinels name for the master now (asks the first sentinel that answers).
    public func masterPort() async throws -> Int {
        for sentinel in sentinels {
            if let reply = try? await Self.command(sentinel, ["SENTINEL", "GET-MASTER-ADDR-BY-NAME", masterName]),
                let parts = reply.array, parts.count == 2, let port = parts[1].integer
            {
                return Int(port)
            }
        }
        throw TestSupportError("no sentinel named a master for \(masterName)")
    }

    /// The server the sentinels name as master now.
    public func master() async throws -> RedisServer {
        let port = try await masterPort()
        guard let server = servers.first(where: { announcedPort($0) == port }) else {
            throw TestSupportError("the sentinels name port \(port), which is none of this topology's servers")
        }
        return server
    }

    /// Waits until the sentinels name a master other than `previous` and that server says it is a master.
    public func waitForFailover(from previous: RedisServer, timeout: Duration = .seconds(30)) async throws -> RedisServer {
        try await Self.waitFor("a failover away from port \(previous.port)", timeout: timeout) {
            guard let now = try? await self.master(), now !== previous else { return false }
            let role = try? await Self.command(now, ["ROLE"]).array?.first?.string
            return role == "master"
        }
        return try await master()
    }

    /// One command on a fresh plain connection to `server` (a data server or a sentinel).
    public static func command(_ server: RedisServer, _ arguments: [String]) async throws -> RedisReply {
        let configuration = server.configuration(commandTimeout: .seconds(2), connectTimeout: .seconds(1))
        let connection = try await RedisConnection.connect(configuration: configuration)
        do {
            let reply = try await connection.send(RedisCommand(arguments[0], arguments: arguments.dropFirst().map { .string($0) }))
            await connection.close()
            return reply
        } catch {
            await connection.close()
            throw error
        }
    }

    private static func waitFor(_ what: String, timeout: Duration = .seconds(30), _ condition: @escaping () async throws -> Bool) async throws {
        let ok = await eventually(timeout: timeout, every: .milliseconds(100)) { (try? await condition()) ?? false }
        guard ok else { throw TestSupportError("timed out after \(timeout) waiting for \(what)") }
    }

    deinit {
        try? FileManager.default.removeItem(at: directory)
    }
}
