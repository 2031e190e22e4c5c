// The Swift snippets of README.md and docs/guide.md, compiled with the tests. DocumentationTests checks that
// every snippet there stands here, line for line, so a snippet that stops compiling fails the build.
// Imports are at the top (a snippet's own imports are checked to name modules imported here); snippets of
// statements sit in functions, with what they leave undefined (`payload`, `handle`) defined before them.
import ArgumentParser
import ChannelsNode
import ChannelsNodeRunner
import ChannelsProtocol
import HiredisClient
// Only for this package's MemberImportVisibility setting: apps build the snippets without it.
import OrderedCollections

// README: Using the client
func readmeUsingTheClient(payload: [UInt8], handle: @escaping @Sendable (String, [UInt8]) -> Void) async throws {
    let configuration = try RedisConfiguration(url: "redis://127.0.0.1:6379")
    let client = RedisClient(configuration: configuration)        // pipelined, reconnects on demand
    try await client.send("PUBLISH", "asgi__group__chat_lobby", .bytes(payload))

    let subscriber = RedisSubscriber(configuration: configuration)
    try await withThrowingDiscardingTaskGroup { group in
        group.addTask { try await subscriber.run() }             // reconnects and resubscribes after outages
        try await subscriber.subscribe(["asgi__group__chat_lobby"])
        for await message in subscriber.messages { handle(message.channel, message.payload) }
    }
}

// README: Writing a consumer
final class EchoConsumer: WebSocketConsumer {
    static var messageHandlers: [String: Handler] { ["echo_message": EchoConsumer.echo] }
    let context: ConsumerContext
    init(context: ConsumerContext) { self.context = context }

    func connect() async throws -> ConnectDecision {
        try await context.groupAdd("echo")                 // left automatically on disconnect
        return .accept
    }
    func receive(text: String) async throws {
        try await context.groupSend(["type": "echo.message", "text": .string(text)], to: "echo")
    }
    func echo(_ message: Message) async throws {           // handles type "echo.message"
        context.send(text: message["text"]?.string ?? "")
    }
}

func readmeRouting() -> ConsumerRouter {
    var router = ConsumerRouter()
    router.add("/ws/echo/<name>/", EchoConsumer.self)          // parameters land in context.scope.parameters
    return router
}

final class ForwardingEchoConsumer: WebSocketConsumer {
    static var forwardRules: [String: ForwardRule] { ["echo_message": ForwardRule(fields: ["text"])] }
    let context: ConsumerContext
    init(context: ConsumerContext) { self.context = context }
}

// docs/guide.md: A consumer
final class ScoreConsumer: WebSocketConsumer {
    // Handlers that only pass fields on run on the event loop and are encoded once per group message.
    static var forwardRules: [String: ForwardRule] { ["score_changed": ForwardRule(fields: ["team", "score"])] }
    let context: ConsumerContext
    init(context: ConsumerContext) { self.context = context }

    func connect() async throws -> ConnectDecision {
        let game = "game_\(context.scope.parameters["game"] ?? "")"
        guard ChannelNames.isValidGroup(game) else { return .reject(code: CloseCode.policyViolation, reason: "invalid game") }
        try await context.groupAdd(game)                      // left by itself on disconnect
        return .accept
    }

    func receive(text: String) async throws {
        context.refuse(.invalidFrame, detail: "this endpoint only sends scores")
    }
}

// docs/guide.md: A handler with code
final class ScoreBoardConsumer: WebSocketConsumer {
    static var messageHandlers: [String: Handler] { ["score_reset": ScoreBoardConsumer.reset] }
    let context: ConsumerContext
    init(context: ConsumerContext) { self.context = context }

    func connect() async throws -> ConnectDecision {
        try await context.groupAdd("scoreboard")
        return .accept
    }

    func reset(_ message: Message) async throws {
        let team = message["team"]?.string ?? "?"
        try context.send(json: ["type": "reset", "team": .string(team)])
    }
}

// docs/guide.md: Routing
func guideRouting() -> ConsumerRouter {
    var router = ConsumerRouter()
    router.add("/ws/scores/<game>/", ScoreConsumer.self)      // <game> lands in context.scope.parameters
    return router
}

// docs/guide.md: The node (`@main` left out: a test bundle has its own entry point)
struct MyNode: AsyncParsableCommand {
    @OptionGroup var options: NodeOptions                 // every channels-node flag and CHANNELS_* variable

    func run() async throws {
        var router = ConsumerRouter()
        router.add("/ws/scores/<game>/", ScoreConsumer.self)
        try await NodeApplication(options: options, router: router).run()
    }
}
