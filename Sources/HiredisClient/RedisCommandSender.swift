/// What can send commands: a ``RedisConnection`` or a reconnecting ``RedisClient``.
public protocol RedisCommandSender: Sendable {
    /// Sends one command and returns its reply.
    func send(_ command: RedisCommand) async throws(RedisError) -> RedisReply
    /// Sends commands in one pipeline and returns their replies in order.
    func pipeline(_ commands: [RedisCommand]) async throws(RedisError) -> [RedisReply]
}

extension RedisConnection: RedisCommandSender {}
extension RedisClient: RedisCommandSender {}
