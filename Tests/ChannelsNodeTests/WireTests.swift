import ChannelsTestSupport
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
}
