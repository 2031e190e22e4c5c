import ArgumentParser
import ChannelsNode
import ChannelsNodeRunner
import CursorSharing

/// A node serving the cursor board: every `channels-node` option (Redis, layer, JWT, limits, API, drain),
/// this app's route and page.
@main
struct CursorNode: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "cursor-node", abstract: "Shared cursors on swift-channels.", discussion: NodeOptions.discussion)

    @OptionGroup var options: NodeOptions

    func run() async throws {
        var router = ConsumerRouter()
        router.add("/ws/cursors/<board>/", CursorConsumer.self)
        try await NodeApplication(options: options, router: router, pages: ["/": ChannelsNode.Page(body: CursorPage.html)], label: "cursor-node").run()
    }
}
