import ChannelsTestSupport
import ChannelsWebSocketClient
import Foundation
import Testing

/// What clients see while a node's Redis is down or cut off (issue 21): new connections are refused at once
/// with a reason instead of hanging, and an error frame about a message is true: a message reported as not
/// delivered never arrives, even after a partition heals and TCP retransmits what it held.
@Suite(.serialized) struct LayerOutageTests {
    @Test func aNodeWhoseRedisIsDownRefusesNewConnectionsAtOnce() async throws {
        let redis = try await RedisServer.start()
        let node = try await NodeProcess.start(redis: [redis.url])
        redis.kill()
        try await Task.sleep(for: .milliseconds(300))

        for attempt in 0..<3 {
            let started = ContinuousClock.now
            let client = try await WebSocketClient.connect(host: "127.0.0.1", port: node.port, path: "/ws/chat/fresh\(attempt)/")
            let close = await client.closed(timeout: .seconds(5))
            let took = ContinuousClock.now - started
            #expect(close?.code == 1013, "refused with 1013, try again later (got \(String(describing: close)))")
            #expect(close?.reason.contains("channel layer unavailable") == true)
            #expect(took < .seconds(2), "refused within about a second, took \(took)")
        }
        let metrics = try await node.get("/metrics").body
        #expect(metrics.contains("channels_layer_unavailable_refusals_total 3"))
        #expect(await eventually(timeout: .seconds(10)) { (try? await node.get("/readyz").status) == 503 })

        // Once Redis is back, the node takes connections again by itself.
        try await redis.restart()
        #expect(await eventually(timeout: .seconds(20)) { (try? await node.get("/readyz").status) == 200 })
        let client = try await ChatClient.connect(port: node.port, room: "back")
        client.say("hello")
        #expect(await client.waitForFrames(1))
        #expect(client.messages == ["hello"])
    }

    /// An error frame's `frame` number and code.
    struct Report: Hashable {
        let frame: Int
        let error: String
    }

    @Test func aMessageReportedAsNotDeliveredNeverArrivesAfterAPartitionHeals() async throws {
        // Redis listens on two loopback addresses; the sender's node reaches it through 127.0.0.2, which is
        // cut, and the reader's through 127.0.0.1, which is not.
        let redis = try await RedisServer.start(arguments: ["--bind", "127.0.0.1", "127.0.0.2"])
        let sending = try await NodeProcess.start(redis: ["redis://127.0.0.2:\(redis.port)"])
        let reading = try await NodeProcess.start(redis: [redis.url])
        let sender = try await ChatClient.connect(port: sending.port, room: "partition")
        let reader = try await ChatClient.connect(port: reading.port, room: "partition")
        sender.say("warm")  // frame 1
        #expect(await eventually(timeout: .seconds(5)) { reader.messages == ["warm"] })

        let partition = try await NetworkPartition.cut(address: "127.0.0.2", port: redis.port)
        let cutAt = ContinuousClock.now
        // One message a second for 20 s: frames 2...21.
        for index in 0..<20 {
            sender.say("p\(index)")
            try await Task.sleep(for: .seconds(1))
        }
        try await partition.heal()
        print("partition of the sending node's Redis connection healed after \(ContinuousClock.now - cutAt)")
        // Every message is decided within the command and connect timeouts of the last one.
        let settled = await eventually(timeout: .seconds(60), every: .milliseconds(250)) {
            let reported = Set(Self.reports(sender).map(\.frame))
            let arrived = Set(reader.messages)
            return (0..<20).allSatisfy { reported.contains($0 + 2) || arrived.contains("p\($0)") }
        }
        #expect(settled, "every message either arrived or was reported")
        // Late copies (TCP retransmissions) would come within seconds of the heal.
        try await Task.sleep(for: .seconds(5))

        let reports = Self.reports(sender)
        let arrived = reader.messages
        print("partition: reports \(reports.map { "\($0.frame):\($0.error)" }), arrived \(arrived)")
        #expect(!reports.isEmpty, "a 20 s partition must cost some messages an error frame")
        #expect(reports.allSatisfy { (2...21).contains($0.frame) }, "each error frame names the message it is about")
        for index in 0..<20 {
            let text = "p\(index)"
            let copies = arrived.filter { $0 == text }.count
            let report = reports.first { $0.frame == index + 2 }
            switch report?.error {
            case "unavailable"?:
                #expect(copies == 0, "\(text) was reported as not delivered, yet arrived \(copies) times")
            case "unconfirmed"?:
                #expect(copies <= 1, "\(text) arrived \(copies) times")
            case nil:
                #expect(copies == 1, "\(text) had no error frame but arrived \(copies) times")
            case let other?:
                Issue.record("unexpected error \(other) for \(text)")
            }
        }
        #expect(sender.client.isOpen && reader.client.isOpen, "a partition closes no client")
        let metrics = try await sending.get("/metrics").body
        #expect(Self.value(of: "channels_publish_failures_total", in: metrics) == reports.filter { $0.error == "unavailable" }.count)
        #expect(Self.value(of: "channels_publish_unconfirmed_total", in: metrics) == reports.filter { $0.error == "unconfirmed" }.count)
        // And the room works again for what is sent now.
        let delivered = await eventually(timeout: .seconds(30), every: .milliseconds(500)) {
            sender.say("after")
            return reader.messages.contains("after")
        }
        #expect(delivered, "messages sent after the partition healed arrive")
    }

    /// A counter's value in Prometheus text.
    static func value(of name: String, in metrics: String) -> Int? {
        for line in metrics.split(separator: "\n") where line.hasPrefix(name + " ") {
            return Double(line.dropFirst(name.count + 1)).map { Int($0) }
        }
        return nil
    }

    /// The error frames a client got, with the number of the frame each is about.
    static func reports(_ client: ChatClient) -> [Report] {
        client.frames.compactMap { text in
            // Errors about the client's own messages (not messages_lost, which is about the node's subscription).
            guard let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any],
                object["type"] as? String == "error", let error = object["error"] as? String, error == "unavailable" || error == "unconfirmed"
            else { return nil }
            // An error frame that does not say which message it means tells the client nothing it can act on.
            guard let frame = object["frame"] as? Int else { return Report(frame: -1, error: error) }
            return Report(frame: frame, error: error)
        }
    }
}
