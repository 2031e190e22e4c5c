import ArgumentParser
import ChannelsChat
import ChannelsNode
import ChannelsNodeRunner

/// `channels-node`: a WebSocket front node serving the seed apps' consumers: chat at `/ws/chat/<room>/`,
/// live model updates at `/ws/updates/<model>/`. Everything else is ``NodeApplication``'s, which your own
/// node can use the same way.
@main
struct ChannelsNodeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "channels-node",
        abstract: "Run a swift-channels WebSocket node.",
        discussion: NodeOptions.discussion,
        version: ChannelsNode.version
    )

    @OptionGroup var options: NodeOptions

    func run() async throws {
        var router = ConsumerRouter()
        router.add("/ws/chat/<room>/", ChatConsumer.self)
        router.add("/ws/updates/<model>/", UpdatesConsumer.self)
        try await NodeApplication(options: options, router: router, pages: ["/": ChannelsNode.Page(body: DemoPage.html)]).run()
    }
}
