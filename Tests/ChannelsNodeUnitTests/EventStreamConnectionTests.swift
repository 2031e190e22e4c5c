import ChannelLayers
import ChannelsProtocol
import NIOCore
import NIOEmbedded
import NIOWebSocket
import Synchronization
import Testing

@testable import ChannelsNode

/// What an event-stream connection writes, on NIO's testing channel, and the event encoding alone.
@Suite(.serialized) struct EventStreamConnectionTests {
    /// Everything written so far, as text, after running the loop for a moment.
    static func output(_ harness: ConnectionHarness) async throws -> (text: String, writes: Int) {
        var text = ""
        var writes = 0
        for _ in 0..<20 {
            await harness.channel.testingEventLoop.run()
            while let buffer = try await harness.channel.readOutbound(as: ByteBuffer.self) {
                guard buffer.readableBytes > 0 else { continue }
                writes += 1
                text += String(buffer: buffer)
            }
            try await Task.sleep(for: .milliseconds(2))
        }
        return (text, writes)
    }

    @Test func aGroupsMessagesAreEventsWithTheirPositionMadeOnceForEveryStream() async throws {
        let layer = InMemoryChannelLayer(configuration: .init(history: HistoryConfiguration(patterns: ["chat_*"])))
        let stream = try await ConnectionHarness.make(transport: .eventStream, layer: layer)
        let other = try await ConnectionHarness.make(transport: .eventStream, layer: layer)
        let socket = try await ConnectionHarness.make(layer: layer)
        // A stream always recovers: first the group's position, as the id of an `event: recovered`.
        let opening = try await Self.output(stream).text
        #expect(opening.hasPrefix("event: recovered\nid: ") && opening.contains(":0\ndata: {\"type\":\"recovery\",\"recovered\":true"), "\(opening)")
        let epoch = try #require(opening.split(separator: "\n")[1].dropFirst(4).split(separator: ":").first.map(String.init))
        _ = try await Self.output(other)
        _ = try await socket.settle()
        let deliveries = (1...3).map { n in
            Delivery(["type": "fwd.message", "n": .int(Int64(n))], group: "chat_room", position: HistoryPosition(offset: Int64(n), epoch: epoch))
        }
        for harness in [stream, other, socket] {
            let connection = harness.connection
            try await harness.channel.testingEventLoop.submit {
                for delivery in deliveries { _ = connection.receive(delivery) }
                connection.endOfBatch()
            }.get()
        }
        let (text, writes) = try await Self.output(stream)
        let expected = (1...3).map { "id: \(epoch):\($0)\ndata: {\"n\":\($0),\"offset\":\($0),\"epoch\":\"\(epoch)\"}\n\n" }.joined()
        #expect(text == expected)
        #expect(writes == 1, "a batch is one write on a stream too")
        #expect(try await Self.output(other).text == text)
        // The WebSocket member of the same deliveries still gets frames.
        let frames = try await socket.written(atLeast: 3).frames
        #expect(frames.map { $0.json?["n"] as? Int } == [1, 2, 3])
        // One event made per message for both streams: the same bytes, kept beside the frame.
        let rule = try #require(stream.connection.route?.rules["fwd_message"])
        let event = deliveries[0].prepared(for: ObjectIdentifier(rule.eventStream)) { nil }
        #expect(event.map { String(buffer: $0) } == "id: \(epoch):1\ndata: {\"n\":1,\"offset\":1,\"epoch\":\"\(epoch)\"}\n\n")

        // A message of another history group the consumer is in carries no id: Last-Event-ID names chat_room only.
        let elsewhere = Delivery(["type": "fwd.message", "n": 9], group: "chat_other", position: HistoryPosition(offset: 7, epoch: epoch))
        let connection = stream.connection
        try await stream.channel.testingEventLoop.submit {
            _ = connection.receive(elsewhere)
            connection.endOfBatch()
        }.get()
        #expect(try await Self.output(stream).text == "data: {\"n\":9,\"offset\":7,\"epoch\":\"\(epoch)\"}\n\n")
    }

    @Test func theConsumersTextIsAnEventAndItsBinaryIsDropped() async throws {
        let harness = try await ConnectionHarness.make(transport: .eventStream)
        _ = try await Self.output(harness)
        try await harness.publish("code.message", -2)
        let (text, _) = try await Self.output(harness)
        #expect(text == "data: {\"handled\":-2}\n\n")
        #expect(harness.log.handled.withLock { $0 } == [-2])
    }

    @Test func aCloseIsAnEventThenTheEndOfTheStream() async throws {
        let harness = try await ConnectionHarness.make(transport: .eventStream)
        _ = try await Self.output(harness)
        harness.connection.requestClose(code: CloseCode.goingAway, reason: "node draining")
        let (text, _) = try await Self.output(harness)
        #expect(text == "event: close\ndata: {\"code\":1001,\"reason\":\"node draining\"}\n\n")
        #expect(try await harness.channel.testingEventLoop.submit { !harness.connection.lifecycle.isOpen }.get())
        #expect(harness.log.disconnects.withLock { $0 } == [CloseCode.goingAway])
    }

    @Test func keepAlivesAreCommentsAndASilentClientIsNotTimedOut() async throws {
        let harness = try await ConnectionHarness.make(pingInterval: .seconds(30), transport: .eventStream)
        _ = try await Self.output(harness)
        for _ in 0..<3 { await harness.channel.testingEventLoop.advanceTime(by: .seconds(30)) }
        let (text, _) = try await Self.output(harness)
        #expect(text.hasSuffix(":\n\n:\n\n:\n\n") && !text.contains("close"), "\(text)")
        #expect(try await harness.channel.testingEventLoop.submit { harness.connection.lifecycle.isOpen }.get())
    }

    @Test func eventsSplitLinesAsTheStandardReadsThem() {
        let event = ServerEvent.event(name: "note", id: "E:7", data: Array("one\ntwo\r\nthree\rfour".utf8))
        #expect(String(buffer: event) == "event: note\nid: E:7\ndata: one\ndata: two\ndata: three\ndata: four\n\n")
        #expect(String(buffer: ServerEvent.event(data: [UInt8]())) == "data: \n\n")
        #expect(ServerEvent.isEvent(event) && !ServerEvent.isEvent(ServerFrame.text("x")))
        #expect(ServerEvent.converting(frame: ServerFrame.text("{\"a\":1}")).map { String(buffer: $0) } == "data: {\"a\":1}\n\n")
        #expect(ServerEvent.converting(frame: ServerFrame.make(.binary, payload: [1, 2])) == nil)
        #expect(String(buffer: ServerEvent.close(code: 4008, reason: "a \"slow\" client")) == "event: close\ndata: {\"code\":4008,\"reason\":\"a \\\"slow\\\" client\"}\n\n")
    }

    @Test func lastEventIDsAreReadBackOrRefused() {
        #expect(ServerEvent.position(fromID: "3f9a:12")! == ("3f9a", 12))
        #expect(ServerEvent.position(fromID: "a:b:12")! == ("a:b", 12))
        for bad in ["", "12", ":12", "E:", "E:-1", "E:1x", "E: 1"] { #expect(ServerEvent.position(fromID: bad) == nil, "\(bad)") }
        let scope = Scope(path: "/", headers: [("last-event-id", "E:4")], transport: .eventStream)
        guard case .at(let position) = ClientConnection.AskedPosition(scope: scope) else { Issue.record("not a position"); return }
        #expect(position.epoch == "E" && position.offset == 4)
        let unreadable = Scope(path: "/", headers: [("last-event-id", "nonsense")], transport: .eventStream)
        guard case .invalid = ClientConnection.AskedPosition(scope: unreadable) else { Issue.record("not invalid"); return }
        // A WebSocket's header is not its position: the query is.
        let socket = Scope(path: "/", query: ["epoch": "F", "offset": "2"], headers: [("last-event-id", "E:4")])
        guard case .at(let asked) = ClientConnection.AskedPosition(scope: socket) else { Issue.record("not a position"); return }
        #expect(asked.epoch == "F")
    }
}
