import ChannelsTestSupport
import ChannelsWebSocketClient
import Foundation
import Testing

/// Publishing slows before a reading client is closed: two real nodes over a real Redis, a publisher on one,
/// a reader that falls behind on the other.
@Suite(.serialized) struct BackPressureTests {
    /// The readers' node has small buffers, so that a test-sized flood puts a reader behind (soft mark 64 KiB,
    /// closed past 256 KiB); the publisher's node has the default 4 MiB, since what it published before a lag was
    /// known still comes back to its own (debug-built, test) client in a burst.
    static func nodes(grace: Double) async throws -> (RedisServer, NodeProcess, NodeProcess) {
        let redis = try await RedisServer.start()
        let common = ["--slow-reader-grace", "\(grace)", "--history", "none", "--log-connections"]
        let first = try await NodeProcess.start(redis: [redis.url], nodeID: "bp-a-\(redis.port)", arguments: common)
        let second = try await NodeProcess.start(
            redis: [redis.url], nodeID: "bp-b-\(redis.port)", arguments: common + ["--max-queued-bytes", "262144", "--socket-send-buffer", "4096"]
        )
        return (redis, first, second)
    }

    static let padding = String(repeating: "x", count: 2000)

    /// The n-th message of a run: its number, then 2,000 bytes.
    static func text(_ index: Int) -> String { "\(index)-\(padding)" }

    /// Says `count` messages, `pause` apart: paced like a client that waits for nothing but its socket, so that
    /// what was published before a lag was known does not close the publisher's own (debug-built, test) client.
    static func publish(_ count: Int, from publisher: ChatClient, pause: Duration) async throws {
        for index in 0..<count {
            publisher.say(text(index))
            try await Task.sleep(for: pause)
        }
    }

    static func value(_ name: String, on node: NodeProcess) async -> Double {
        ((try? await node.get("/metrics").body).flatMap { metric($0, name) }) ?? 0
    }

    @Test func publishersOnAnotherNodeWaitForAReaderBehindWhichThenGetsEverything() async throws {
        let (redis, first, second) = try await Self.nodes(grace: 20)
        defer { redis.stop() }
        let reader = try await ChatClient.connect(port: second.port, room: "pressure")
        reader.client.setReading(false)
        let publisher = try await ChatClient.connect(port: first.port, room: "pressure")
        // 800 KB for the reader: past its kernel buffers and its 64 KiB soft mark, and three times the 256 KiB
        // that would close it, had the publisher gone on.
        let count = 400
        try await Self.publish(count, from: publisher, pause: .milliseconds(1))
        #expect(await eventually(timeout: .seconds(10)) { await Self.value("channels_lagging_groups", on: second) == 1 })
        #expect(await eventually(timeout: .seconds(10)) { await Self.value("channels_publishes_slowed_total", on: first) >= 1 })
        // The publisher's node holds its messages while the reader is behind: its own echoes stop short.
        try await Task.sleep(for: .seconds(2))
        let echoedWhileHeld = publisher.messages.count
        #expect(echoedWhileHeld < count, "the publisher went on: \(echoedWhileHeld) of \(count) echoed")
        #expect(await Self.value("channels_slow_client_closes_total", on: second) == 0)

        reader.client.setReading(true)
        #expect(await reader.waitForFrames(count, timeout: .seconds(30)), "\(reader.messages.count) of \(count)")
        #expect(reader.messages == (0..<count).map(Self.text), "every message once, in order")
        let echoed = await publisher.waitForFrames(count, timeout: .seconds(10))
        let publisherClose = echoed ? nil : await publisher.client.closed(timeout: .seconds(1))
        #expect(echoed, "\(publisher.frames.count) \(String(describing: publisherClose))")
        #expect(reader.client.isOpen)
        #expect(await Self.value("channels_slow_client_closes_total", on: second) == 0)
        #expect(await eventually(timeout: .seconds(5)) { await Self.value("channels_lagging_groups", on: second) == 0 })
        #expect(await Self.value("channels_readers_behind_total", on: second) >= 1)
    }

    @Test func aReaderThatStopsReadingHoldsPublishersForItsGraceThenIsClosed() async throws {
        let (redis, first, second) = try await Self.nodes(grace: 1)
        defer { redis.stop() }
        let stopped = try await ChatClient.connect(port: second.port, room: "stopped")
        stopped.client.setReading(false)
        let reader = try await ChatClient.connect(port: second.port, room: "stopped")
        let publisher = try await ChatClient.connect(port: first.port, room: "stopped")
        let count = 400
        // Slower, so that the reading client stays under its soft mark.
        try await Self.publish(count, from: publisher, pause: .milliseconds(2))
        #expect(await publisher.waitForFrames(count, timeout: .seconds(30)), "\(publisher.messages.count) of \(count)")
        #expect(await reader.waitForFrames(count, timeout: .seconds(30)), "\(reader.messages.count) of \(count)")
        #expect(reader.messages == (0..<count).map(Self.text))
        #expect(await eventually(timeout: .seconds(10)) { await Self.value("channels_slow_client_closes_total", on: second) == 1 })
        #expect(await Self.value("channels_readers_past_grace_total", on: second) >= 1)
        #expect(await Self.value("channels_publishes_slowed_total", on: first) >= 1)
        #expect(reader.client.isOpen)
    }

    @Test func withNoGracePublishersNeverWait() async throws {
        let (redis, first, second) = try await Self.nodes(grace: 0)
        defer { redis.stop() }
        let stopped = try await ChatClient.connect(port: second.port, room: "nograce")
        stopped.client.setReading(false)
        let publisher = try await ChatClient.connect(port: first.port, room: "nograce")
        // With no grace the publisher itself would be closed if it fell behind: paced as the one above.
        try await Self.publish(400, from: publisher, pause: .milliseconds(2))
        #expect(await publisher.waitForFrames(400, timeout: .seconds(30)), "\(publisher.frames.count) \(publisher.client.isOpen) \(first.log.suffix(1500))")
        #expect(await eventually(timeout: .seconds(10)) { await Self.value("channels_slow_client_closes_total", on: second) == 1 })
        #expect(await Self.value("channels_publishes_slowed_total", on: first) == 0)
        #expect(await Self.value("channels_lagging_groups", on: second) == 0)
    }

    @Test func aBadGraceIsRefusedAtStart() async throws {
        let node = try await NodeProcess.start(arguments: ["--slow-reader-grace=-1"], waitForReady: false)
        #expect(await node.exitStatus() != 0)
        #expect(node.log.contains("--slow-reader-grace must be 0 to 60 seconds"))
    }
}
