import ArgumentParser

/// `channels-bench`: load generators that print figures; never part of the test suite.
@main
struct ChannelsBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "channels-bench",
        abstract: "Measure swift-channels: the Redis client now, the nodes later.",
        subcommands: [FanoutCommand.self, IdleCommand.self, RecoverCommand.self, RedisPublishCommand.self, LayerFanoutCommand.self, LayerMembersCommand.self]
    )
}

/// A failure that is not a usage error (Redis unreachable, credentials refused): `Error: <text>`, exit 1.
struct BenchFailure: Error, CustomStringConvertible {
    let description: String
}
