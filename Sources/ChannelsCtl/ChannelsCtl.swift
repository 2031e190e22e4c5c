import ArgumentParser

/// `channels-ctl`: operator commands against the Redis a swift-channels cluster uses.
@main
struct ChannelsCtl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "channels-ctl",
        abstract: "Inspect and operate the Redis behind a swift-channels cluster.",
        subcommands: [CheckCommand.self]
    )
}

/// Options every command that talks to Redis shares.
struct RedisOptions: ParsableArguments {
    @Option(
        name: .customLong("redis"),
        help: ArgumentHelp(
            "Redis URL: redis://[[user]:password@]host[:port][/db] or unix:///path (default: $CHANNELS_REDIS_URL or redis://127.0.0.1:6379).",
            valueName: "url"
        )
    )
    var url: String?

    var resolvedURL: String {
        url ?? ProcessInfo.environment["CHANNELS_REDIS_URL"] ?? "redis://127.0.0.1:6379"
    }
}
