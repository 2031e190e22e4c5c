/// What can send commands: a ``RedisConnection``, a reconnecting ``RedisClient``, or a ``RedisClusterClient``.
public protocol RedisCommandSender: Sendable {
    /// Sends one command and returns its reply.
    func send(_ command: RedisCommand) async throws(RedisError) -> RedisReply
    /// Sends commands in one pipeline and returns their replies in order.
    func pipeline(_ commands: [RedisCommand]) async throws(RedisError) -> [RedisReply]
    /// Where a keyspace-wide command (`SCAN`) must run to see every key: itself, or each primary of a cluster.
    func keyspaceSenders() async throws(RedisError) -> [any RedisCommandSender]
}

extension RedisCommandSender {
    public func keyspaceSenders() async throws(RedisError) -> [any RedisCommandSender] { [self] }
}

extension RedisConnection: RedisCommandSender {}
extension RedisClient: RedisCommandSender {}

extension RedisClusterClient {
    public func keyspaceSenders() async throws(RedisError) -> [any RedisCommandSender] { try await primaryClients() }
}
