import ChannelLayers
import ChannelsNode
import ChannelsProtocol
import ChannelsTestSupport
import ChannelsWebSocketClient
import Foundation
import HiredisClient
import Logging
import ServiceLifecycle
import Synchronization
import Testing

/// The fan-out engine: order across forwarded frames and handler code, and no message lost when a node
/// falls behind.
@Suite(.serialized) struct EngineTests {
    /// Half of its messages are forwarded by a rule, a third go through handler code that yields first: if
    /// a forwarded frame could overtake a message still in handler code, the client would see it.
    final class OrderConsumer: WebSocketConsumer {
        static var forwardRules: [String: ForwardRule] { ["fwd_message": ForwardRule(fields: ["n"])] }
        static var messageHandlers: [String: Handler] { ["code_message": OrderConsumer.code] }

        let context: ConsumerContext
        init(context: ConsumerContext) { self.context = context }

        func connect() async throws -> ConnectDecision {
            try await context.groupAdd("order")
            return .accept
        }

        /// `"N"` publishes messages 1...N into the group this connection is a member of.
        func receive(text: String) async throws {
            for n in 1...(Int(text) ?? 1) {
                let type = n % 3 == 0 ? "code.message" : "fwd.message"
                try await context.groupSend(["type": .string(type), "n": .int(Int64(n))], to: "order")
            }
        }

        func code(_ message: Message) async throws {
            await Task.yield()
            context.send(text: #"{"n":\#(message["n"]?.int ?? 0)}"#)
        }
    }

    /// Greets its client from `connect()`, as Django consumers often do after `accept()`.
    final class WelcomeConsumer: WebSocketConsumer {
        let context: ConsumerContext
        init(context: ConsumerContext) { self.context = context }

        func connect() async throws -> ConnectDecision {
            context.send(text: #"{"n":0}"#)
            try await context.groupAdd("welcome")
            return .accept
        }
    }

    final class Frames: Sendable {
        let values = Mutex<[Int]>([])
    }

    static func connect(port: Int, path: String) async throws -> (WebSocketClient, Frames) {
        let frames = Frames()
        let client = try await WebSocketClient.connect(
            host: "127.0.0.1", port: port, path: path,
            onMessage: { message in
                guard let text = message.text,
                    let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any],
                    let n = object["n"] as? Int
                else { return }
                frames.values.withLock { $0.append(n) }
            }
        )
        return (client, frames)
    }

    @Test func framesKeepTheOrderOfTheirMessagesAcrossRulesAndHandlerCode() async throws {
        var router = ConsumerRouter()
        router.add("/ws/order/", OrderConsumer.self)
        let port = try freePort()
        let node = ChannelsNode(
            configuration: NodeConfiguration(port: port, nodeID: "order-test"), layer: InMemoryChannelLayer(), router: router
        )
        let group = ServiceGroup(services: [node], logger: Logger(label: "test"))
        let running = Task { try await group.run() }
        defer { running.cancel() }
        #expect(await eventually { (try? await httpGet(port: port, path: "/healthz").status) == 200 })

        let (publisher, published) = try await Self.connect(port: port, path: "/ws/order/")
        let (reader, read) = try await Self.connect(port: port, path: "/ws/order/")
        let count = 600
        // The publisher is a busy member: it receives its own messages while it is still publishing.
        publisher.send(text: String(count))
        #expect(await eventually(timeout: .seconds(20)) { published.values.withLock { $0.count } >= count && read.values.withLock { $0.count } >= count })
        #expect(published.values.withLock { $0 } == Array(1...count))
        #expect(read.values.withLock { $0 } == Array(1...count))
        await publisher.close()
        await reader.close()
        await group.triggerGracefulShutdown()
        _ = await running.result
    }

    @Test func framesSentFromConnectReachTheClient() async throws {
        var router = ConsumerRouter()
        router.add("/ws/welcome/", WelcomeConsumer.self)
        let port = try freePort()
        let node = ChannelsNode(configuration: NodeConfiguration(port: port, nodeID: "welcome-test"), layer: InMemoryChannelLayer(), router: router)
        let group = ServiceGroup(services: [node], logger: Logger(label: "test"))
        let running = Task { try await group.run() }
        defer { running.cancel() }
        #expect(await eventually { (try? await httpGet(port: port, path: "/healthz").status) == 200 })
        let (client, frames) = try await Self.connect(port: port, path: "/ws/welcome/")
        #expect(await eventually { frames.values.withLock { $0 } == [0] })
        await client.close()
        await group.triggerGracefulShutdown()
        _ = await running.result
    }

    @Test func aNodeStoppedForTwoSecondsCatchesUpWithEveryMessage() async throws {
        let redis = try await RedisServer.start()
        let node = try await NodeProcess.start(redis: [redis.url])
        var clients: [ChatClient] = []
        for _ in 0..<20 { clients.append(try await ChatClient.connect(port: node.port, room: "stopped")) }
        let publisher = try await RedisConnection.connect(configuration: redis.configuration())
        let count = 3000

        kill(node.processIdentifier, SIGSTOP)
        // Redis keeps publishing into the room for 2 s while the node cannot read.
        for index in 0..<count {
            let message: Message = ["type": "chat.message", "message": .string("m-\(index)")]
            let payload = MessagePack.encode(message)
            try await publisher.send(RedisCommand("PUBLISH", "asgi__group__chat_stopped", .bytes(payload)))
            if index % 150 == 149 { try await Task.sleep(for: .milliseconds(100)) }
        }
        kill(node.processIdentifier, SIGCONT)

        let expected = (0..<count).map { "m-\($0)" }
        for client in clients {
            #expect(await client.waitForFrames(count, timeout: .seconds(30)))
            #expect(client.messages == expected)
            #expect(client.client.isOpen)
        }
        let metrics = try await node.get("/metrics").body
        #expect(NodeFaultTests.counter("channels_dropped_total", in: metrics) == 0)
        #expect(NodeFaultTests.counter("channels_slow_client_closes_total", in: metrics) == 0)
        await publisher.close()
        node.terminate()
        _ = await node.exitStatus()
    }
}

/// A hostile publisher on the shared Redis cannot close a room: what cannot become a frame is dropped once
/// per node and counted, and every member stays.
@Suite(.serialized) struct HostilePublisherTests {
    @Test(arguments: ["bytes", "nan", "infinity", "oversized"])
    func aMessageNoFrameCanCarryIsDroppedOnceAndNobodyIsClosed(kind: String) async throws {
        let redis = try await RedisServer.start()
        let nodes = [try await NodeProcess.start(redis: [redis.url]), try await NodeProcess.start(redis: [redis.url])]
        var clients: [ChatClient] = []
        for index in 0..<20 { clients.append(try await ChatClient.connect(port: nodes[index % 2].port, room: "hostile")) }
        let publisher = try await RedisConnection.connect(configuration: redis.configuration())
        let value: MessageValue =
            switch kind {
            case "bytes": .bytes([0x01, 0x00])
            case "nan": .double(.nan)
            case "infinity": .double(-.infinity)
            default: .string(String(repeating: "x", count: 3 << 20))  // 3 MiB: over half the 4 MiB outbound buffer
            }
        let bad: Message = ["type": "chat.message", "message": value]
        let good: Message = ["type": "chat.message", "message": "still here"]
        try await publisher.send(RedisCommand("PUBLISH", "asgi__group__chat_hostile", .bytes(MessagePack.encode(bad))))
        try await publisher.send(RedisCommand("PUBLISH", "asgi__group__chat_hostile", .bytes(MessagePack.encode(good))))
        for client in clients {
            #expect(await client.waitForFrames(1))
            #expect(client.messages == ["still here"])
            #expect(client.client.isOpen)
        }
        let counter = kind == "oversized" ? "channels_oversized_total" : "channels_unencodable_total"
        for node in nodes {
            #expect(NodeFaultTests.counter(counter, in: try await node.get("/metrics").body) == 1)
        }
        await publisher.close()
    }
}
