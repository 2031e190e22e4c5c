import HiredisClient

/// A command connection for reading the registry and other one-off work: to one Redis host, or across a
/// Redis Cluster (each command to its slot's primary, `SCAN` on every primary).
public struct RedisSession: RedisCommandSender {
    private let sender: any RedisCommandSender
    private let closer: @Sendable () async -> Void

    /// Connects to `hosts[0]`, or, when `clustered`, to the cluster the hosts are seeds of.
    public static func open(hosts: [RedisConfiguration], clustered: Bool) async throws(RedisError) -> RedisSession {
        guard let first = hosts.first else { throw RedisError(.invalidURL, "no Redis host given") }
        if clustered {
            let client = try RedisClusterClient(seeds: hosts)
            do {
                _ = try await client.currentTopology()
            } catch {
                await client.close()
                throw error
            }
            return RedisSession(sender: client, closer: { await client.close() })
        }
        let connection = try await RedisConnection.connect(configuration: first)
        return RedisSession(sender: connection, closer: { await connection.close() })
    }

    public func send(_ command: RedisCommand) async throws(RedisError) -> RedisReply { try await sender.send(command) }

    public func pipeline(_ commands: [RedisCommand]) async throws(RedisError) -> [RedisReply] { try await sender.pipeline(commands) }

    public func keyspaceSenders() async throws(RedisError) -> [any RedisCommandSender] { try await sender.keyspaceSenders() }

    /// Sends one command given as a name and arguments.
    @discardableResult
    public func send(_ name: String, _ arguments: RedisArgument...) async throws(RedisError) -> RedisReply {
        try await sender.send(RedisCommand(name, arguments: arguments))
    }

    public func close() async { await closer() }
}
