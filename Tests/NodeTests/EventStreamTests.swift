import ChannelsTestSupport
import ChannelsWebSocketClient
import Foundation
import Testing

/// Consumers' paths served as server-sent events (`Accept: text/event-stream`) by real nodes: frames as
/// events, a history group's position as each event's id, `Last-Event-ID` recovery across nodes, refusals
/// as HTTP statuses, "try again later" as a stream that ends, limits, keep-alives and drain.
@Suite(.serialized) struct EventStreamTests {
    static func metric(_ name: String, on node: NodeProcess) async throws -> Double {
        let text = try await node.get("/metrics").body
        let line = text.split(separator: "\n").first { $0.hasPrefix(name + " ") }
        return line.flatMap { Double($0.split(separator: " ").last ?? "") } ?? 0
    }

    /// Waits until the node counts `count` event streams opened (a stream's consumer has joined its group).
    static func streamsOpened(_ count: Double, on node: NodeProcess) async -> Bool {
        await eventually(timeout: .seconds(10)) { (try? await metric("channels_event_streams_opened_total", on: node)) ?? 0 >= count }
    }

    @Test func curlReadsARoomAsEventsWithTheirPositions() async throws {
        let node = try await NodeProcess.start()
        async let curl = run(
            "/usr/bin/env", ["curl", "-sN", "--max-time", "3", "-H", "Accept: text/event-stream", "http://127.0.0.1:\(node.port)/ws/chat/curl/"],
            environment: [:]
        )
        #expect(await Self.streamsOpened(1, on: node))
        let publisher = try await ChatClient.connect(port: node.port, room: "curl")
        publisher.say("one")
        publisher.say("two")
        #expect(await publisher.waitForFrames(2))
        let output = try await curl.output
        let lines = output.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        // First the browser's reconnect delay, then the recovery answer (a fresh client: nothing missed).
        #expect(lines.first.map { $0.hasPrefix("retry: ") } == true, "\(output)")
        let recovered = try #require(lines.firstIndex(of: "event: recovered"), "\(output)")
        let epochLine = lines[recovered + 1]
        #expect(epochLine.hasPrefix("id: ") && epochLine.hasSuffix(":0"), "\(output)")
        let epoch = String(epochLine.dropFirst(4).dropLast(2))
        // Each message one event: its id, then the frame's JSON.
        let first = try #require(lines.firstIndex(of: "id: \(epoch):1"), "\(output)")
        #expect(lines[first + 1] == #"data: {"message":"one","offset":1,"epoch":"\#(epoch)"}"#, "\(output)")
        #expect(lines[first + 2] == "")
        #expect(lines[first + 3] == "id: \(epoch):2")
        #expect(lines[first + 4] == #"data: {"message":"two","offset":2,"epoch":"\#(epoch)"}"#, "\(output)")
        // A path no consumer serves is not found, whatever it accepts.
        let unknown = try await httpGet(port: node.port, path: "/ws/none/", headers: ["Accept": "text/event-stream"])
        #expect(unknown.status == 404)
    }

    @Test func lastEventIDReplaysWhatAStreamMissedOnceAndInOrderOnAnotherNode() async throws {
        let redis = try await RedisServer.start()
        let first = try await NodeProcess.start(redis: [redis.url])
        let second = try await NodeProcess.start(redis: [redis.url])
        let publisher = try await ChatClient.connect(port: first.port, room: "replay")

        let reader = try await EventStreamClient.connect(port: first.port, path: "/ws/chat/replay/?presence=1")
        #expect(await reader.waitFor { $0.contains { $0.name == "recovered" } })
        #expect(reader.header("Content-Type") == "text/event-stream; charset=utf-8")
        #expect(reader.status == 200 && (1000..<3000).contains(reader.retry ?? 0))
        // Presence: the snapshot is a named event, never a message.
        #expect(reader.events.contains { $0.name == "presence" && $0.json?["type"] as? String == "presence" })
        for index in 0..<5 { publisher.say("m\(index)") }
        #expect(await reader.waitForMessages(5))
        #expect(reader.messages.map { $0.json?["message"] as? String } == ["m0", "m1", "m2", "m3", "m4"])
        let last = try #require(reader.messages.last?.lastID)
        #expect(last.hasSuffix(":5"))
        reader.close()

        for index in 5..<10 { publisher.say("m\(index)") }
        #expect(await publisher.waitForFrames(10))
        // What a browser's EventSource sends by itself when it reconnects, here to the other node.
        let back = try await EventStreamClient.connect(port: second.port, path: "/ws/chat/replay/", headers: [("Last-Event-ID", last)])
        #expect(await back.waitForMessages(5))
        publisher.say("live")
        #expect(await back.waitForMessages(6))
        try await Task.sleep(for: .milliseconds(200))
        #expect(back.messages.map { $0.json?["message"] as? String } == ["m5", "m6", "m7", "m8", "m9", "live"])
        #expect(back.messages.map(\.lastID) == (6...11).map { "\(last.dropLast(2)):\($0)" })
        #expect(back.events.first?.name == "recovered")

        // A position this node never gave: told, with the group's current position as the new id, then live.
        let lost = try await EventStreamClient.connect(port: second.port, path: "/ws/chat/replay/", headers: [("Last-Event-ID", "someone-else:3")])
        #expect(await lost.waitFor { $0.contains { $0.name == "unrecoverable" } })
        let told = try #require(lost.events.first { $0.name == "unrecoverable" })
        #expect(told.json?["recovered"] as? Bool == false)
        #expect(told.lastID == "\(last.dropLast(2)):11")
        publisher.say("after")
        #expect(await lost.waitForMessages(1))
        #expect(lost.messages.map { $0.json?["message"] as? String } == ["after"])
    }

    @Test func refusalsAreHTTPStatusesAndTryAgainLaterIsAStreamThatEnds() async throws {
        let node = try await NodeProcess.start(arguments: [
            "--max-connections", "1", "--allowed-origin", "https://good.example", "--jwt-hs256-secret-file", try NodeSecurityTests.secretFile(),
        ])
        let token = try await NodeSecurityTests.hs256(NodeSecurityTests.claims())
        // No token: 401, as a WebSocket handshake is refused; an EventSource stops there.
        let anonymous = try await EventStreamClient.connect(port: node.port, path: "/ws/chat/sse/")
        #expect(await anonymous.waitForStatus() == 401)
        #expect(anonymous.body.contains("token"))
        // Another site's page: 403 before any consumer runs.
        let foreign = try await EventStreamClient.connect(
            port: node.port, path: "/ws/chat/sse/?token=\(token)", headers: [("Origin", "https://evil.example")]
        )
        #expect(await foreign.waitForStatus() == 403)
        // An allowed origin reads it, told so by CORS; the token in the Authorization header.
        let allowed = try await EventStreamClient.connect(
            port: node.port, path: "/ws/chat/sse/", headers: [("Origin", "https://good.example"), ("Authorization", "Bearer \(token)")]
        )
        #expect(await allowed.waitFor { $0.contains { $0.name == "recovered" } })
        #expect(allowed.status == 200)
        #expect(allowed.header("Access-Control-Allow-Origin") == "https://good.example")
        // At the node's limit: a stream that says 1013 and ends, so that the browser comes back (elsewhere) after `retry`.
        let over = try await EventStreamClient.connect(port: node.port, path: "/ws/chat/sse/?token=\(token)")
        #expect(await over.waitForClose())
        #expect(over.status == 200 && over.retry != nil)
        let close = try #require(over.events.first { $0.name == "close" })
        #expect(close.json?["code"] as? Int == 1013)
        #expect((close.json?["reason"] as? String)?.contains("connection limit") == true)
        #expect(try await Self.metric("channels_connection_limit_refusals_total", on: node) == 1)
        // The stream that was let in still gets the room.
        // (WebSocket clients need the Origin too: this node takes only browsers of good.example.)
        let origin = [("Origin", "https://good.example")]
        let publisher = try await ChatClient.connect(port: node.port, room: "sse", query: "token=\(token)", headers: origin)
        #expect(await publisher.client.closed(timeout: .seconds(2))?.code == 1013)
        allowed.close()
        _ = await eventually { (try? await node.get("/metrics").body.contains("channels_connections 0")) == true }
        let second = try await ChatClient.connect(port: node.port, room: "sse", query: "token=\(token)", headers: origin)
        second.say("hello")
        #expect(await second.waitForFrames(1))
    }

    @Test func aStreamThatIsNotReadIsClosedAsSlowAndTheOthersGoOn() async throws {
        let node = try await NodeProcess.start(arguments: ["--max-queued-bytes", "262144"])
        let stalled = try await EventStreamClient.connect(port: node.port, path: "/ws/chat/slow/", receiveBuffer: 4096)
        let reader = try await EventStreamClient.connect(port: node.port, path: "/ws/chat/slow/")
        #expect(await Self.streamsOpened(2, on: node))
        try await stalled.stopReading()
        let publisher = try await ChatClient.connect(port: node.port, room: "slow")
        let text = String(repeating: "x", count: 2000)
        // Paced, so that the reader (a test client, not a fast one) keeps up while the stalled one falls behind.
        // 800 KB at about 500 KB/s: the stalled stream passes its 256 KiB (and the kernel's buffers) at once, the
        // reader (a debug-built test client beside a debug-built node) may stall half a second.
        for _ in 0..<400 {
            publisher.say(text)
            try await Task.sleep(for: .milliseconds(4))
        }
        #expect(await reader.waitForMessages(400, timeout: .seconds(20)), "\(reader.messages.count) \(reader.events.suffix(2)) \(node.log)")
        #expect(await eventually(timeout: .seconds(10)) { (try? await Self.metric("channels_slow_client_closes_total", on: node)) == 1 })
        // The node gave up on it (after the close event's two seconds): its socket is closed.
        #expect(await eventually(timeout: .seconds(10)) { (try? await node.get("/metrics").body.contains("channels_connections 2")) == true })
        #expect(!reader.isClosed)
    }

    @Test func keepAlivesFlowAndADrainEndsStreamsWithACloseEvent() async throws {
        // No history: nothing is written at once but the answer's head, which must not wait for the first keep-alive.
        let node = try await NodeProcess.start(arguments: ["--ping-interval", "2", "--drain-time", "5", "--history", "none"])
        let stream = try await EventStreamClient.connect(port: node.port, path: "/ws/chat/drain/")
        #expect(await stream.waitForStatus(timeout: .seconds(1)) == 200)
        #expect(stream.comments == 0 && stream.retry != nil)
        #expect(await eventually(timeout: .seconds(6)) { stream.comments >= 2 })
        // Nothing comes back from a stream's client: keep-alives alone do not close it.
        #expect(!stream.isClosed)
        node.terminate()
        #expect(await stream.waitForClose())
        let close = try #require(stream.events.last)
        #expect(close.name == "close" && close.json?["code"] as? Int == 1001, "\(stream.events)")
        #expect(await node.exitStatus() == 0)
    }
}
