import ChannelsTestSupport
import ChannelsWebSocketClient
import Foundation
import Testing

/// What misbehaving WebSocket clients get, sent by hand (`Wire/raw_websocket.py`): a clear answer, never silence.
@Suite struct WireTests {
    static func run(_ scenario: String, port: Int) async throws -> String {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Wire/raw_websocket.py").path
        let python = try PythonProcess(python: "/usr/bin/python3", script: script, arguments: [String(port), scenario])
        return try await python.nextLine(timeout: .seconds(20))
    }

    @Test func badHandshakesAreAnsweredWithTheirStatus() async throws {
        let node = try await NodeProcess.start()
        #expect(try await Self.run("missing-key", port: node.port) == "400 -")
        #expect(try await Self.run("duplicate-key", port: node.port) == "400 -")
        // RFC 6455 4.4: an unsupported version gets 426 and the version the server speaks.
        #expect(try await Self.run("version-12", port: node.port) == "426 version13")
    }

    @Test func anUnmaskedClientFrameClosesWith1002() async throws {
        let node = try await NodeProcess.start()
        #expect(try await Self.run("unmasked", port: node.port) == "close 1002")
    }

    @Test func aBinaryFrameToATextEndpointGetsAnErrorFrame() async throws {
        let node = try await NodeProcess.start()
        let answer = try await Self.run("binary", port: node.port)
        #expect(answer.hasPrefix(#"text {"type":"error","error":"invalid_frame""#), "\(answer)")
    }

    @Test func socketsThatNeverFinishAHandshakeAreClosedAndBadHTTPIsAnswered() async throws {
        let node = try await NodeProcess.start(arguments: ["--handshake-timeout", "1", "--max-pending-handshakes", "20"])
        #expect(try await Self.run("silent", port: node.port) == "closed")
        #expect(try await Self.run("trickle", port: node.port) == "closed")
        #expect(try await Self.run("huge-headers", port: node.port) == "431")
        #expect(try await Self.run("nul-path", port: node.port) == "400")
        // Over the cap of connections that have not upgraded: closed at once, and the node still serves.
        #expect(try await Self.run("pending-20", port: node.port) == "refused 200")
        let metrics = try await node.get("/metrics").body
        for name in ["channels_handshake_timeouts_total", "channels_bad_requests_total", "channels_pending_handshake_refusals_total"] {
            #expect(NodeFaultTests.counter(name, in: metrics) >= 1, "\(name)")
        }
    }

    @Test func outOfFileDescriptorsTheNodeKeepsServingWithoutSpinning() async throws {
        let node = try await NodeProcess.start()
        let alice = try await ChatClient.connect(port: node.port, room: "fds")
        let bob = try await ChatClient.connect(port: node.port, room: "fds")
        // Leave room for a few more descriptors only, then open many more sockets than that.
        let open = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(node.processIdentifier)/fd").count
        let limit = open + 10
        // Only the soft limit moves, so that it can be raised again without privileges.
        let limits = try String(contentsOfFile: "/proc/\(node.processIdentifier)/limits", encoding: .utf8)
        let hard = limits.split(separator: "\n").first { $0.hasPrefix("Max open files") }?.split(separator: " ", omittingEmptySubsequences: true).dropFirst(4).first.map(String.init) ?? "unlimited"
        let lowered = try await ChannelsTestSupport.run("/usr/bin/prlimit", ["--pid", String(node.processIdentifier), "--nofile=\(limit):\(hard)"], environment: [:])
        try #require(lowered.status == 0, "\(lowered.output)")
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Wire/raw_websocket.py").path
        let flood = try PythonProcess(python: "/usr/bin/python3", script: script, arguments: [String(node.port), "hold-60-3"])
        #expect(try await flood.nextLine(timeout: .seconds(30)).hasPrefix("holding"))
        let ticks = { () -> Int in
            let fields = ((try? String(contentsOfFile: "/proc/\(node.processIdentifier)/stat", encoding: .utf8)) ?? "").split(separator: ")").last?.split(separator: " ") ?? []
            return fields.count > 12 ? (Int(fields[11]) ?? 0) + (Int(fields[12]) ?? 0) : 0
        }
        let before = ticks()
        // The connections it has keep working while accepting fails.
        bob.say("still serving")
        #expect(await alice.waitForFrames(1))
        try await Task.sleep(for: .seconds(1.5))
        // No accept loop spinning: well under half a core over 1.5 s (100 ticks a second).
        #expect(ticks() - before < 75, "the node used \(ticks() - before) ticks while out of descriptors")
        #expect(try await flood.nextLine(timeout: .seconds(30)) == "done")
        let raised = try await ChannelsTestSupport.run("/usr/bin/prlimit", ["--pid", String(node.processIdentifier), "--nofile=4096:\(hard)"], environment: [:])
        #expect(raised.status == 0)
        #expect(await eventually { (try? await node.get("/healthz").status) == 200 })
        let metrics = try await node.get("/metrics").body
        #expect(NodeFaultTests.counter("channels_accept_failures_total", in: metrics) >= 1)
        #expect(node.log.components(separatedBy: "cannot accept connections").count - 1 == 1, "\(node.log)")
    }

    @Test func aClientThatAnswersNoPingIsClosedWith4408() async throws {
        let node = try await NodeProcess.start(arguments: ["--ping-interval", "0.5"])
        let silent = try await ChatClient.connect(port: node.port, room: "pings")
        let lively = try await ChatClient.connect(port: node.port, room: "pings")
        // Not reading: no pong goes back, and the node gives up after a whole interval of silence.
        silent.client.setReading(false)
        try await Task.sleep(for: .seconds(2.5))
        silent.client.setReading(true)
        let close = await silent.client.closed(timeout: .seconds(5))
        #expect(close != nil)
        #expect(close?.code == 4408 || close?.code == nil, "\(String(describing: close))")
        // A client that answers pings stays.
        #expect(lively.client.isOpen)
    }
}
