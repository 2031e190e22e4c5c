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

    /// CPU time (user + system) the process has used, in clock ticks (100 a second).
    static func cpuTicks(_ pid: Int32) -> Int {
        let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
        let fields = stat.split(separator: ")").last?.split(separator: " ") ?? []
        return fields.count > 12 ? (Int(fields[11]) ?? 0) + (Int(fields[12]) ?? 0) : 0
    }

    /// Started with 256 descriptors, flooded with connections it cannot accept: it pauses accepting a second
    /// at a time instead of spinning (SwiftNIO keeps its read pending after EMFILE, so the epoll loop spun a
    /// core at 100%, 14.3 million failed accepts in 20 s), keeps serving the connections it has, and accepts
    /// again once descriptors are free.
    @Test func outOfFileDescriptorsTheNodeKeepsServingWithoutSpinning() async throws {
        let node = try await NodeProcess.start(arguments: ["--handshake-timeout", "60"], openFileLimit: 256)
        let alice = try await ChatClient.connect(port: node.port, room: "fds")
        let bob = try await ChatClient.connect(port: node.port, room: "fds")
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Wire/raw_websocket.py").path
        let flood = try PythonProcess(python: "/usr/bin/python3", script: script, arguments: [String(node.port), "flood-400-8"])
        #expect(try await flood.nextLine(timeout: .seconds(30)).hasPrefix("holding"))
        #expect(await eventually { node.log.contains("cannot accept connections") }, "\(node.log)")
        // While clients keep connecting to a node out of descriptors: well under a core (it was a whole one).
        let before = Self.cpuTicks(node.processIdentifier)
        let start = ContinuousClock.now
        try await Task.sleep(for: .seconds(5))
        let used = Double(Self.cpuTicks(node.processIdentifier) - before) / 100 / ((ContinuousClock.now - start) / .seconds(1))
        #expect(used < 0.2, "the node used \(Int(used * 100))% of a core while out of descriptors")
        // The connections it has keep working.
        bob.say("still serving")
        #expect(await alice.waitForFrames(1))
        #expect(try await flood.nextLine(timeout: .seconds(30)) == "done")
        // The flood's sockets closed: their descriptors come back and accepting resumes.
        var carol: ChatClient?
        #expect(await eventually(timeout: .seconds(15), every: .milliseconds(250)) {
            carol = try? await ChatClient.connect(port: node.port, room: "fds")
            return carol != nil
        })
        carol?.say("accepted again")
        #expect(await alice.waitForFrames(2))
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
        #expect(close?.code == 4408, "\(String(describing: close))")
        // A client that answers pings stays.
        #expect(lively.client.isOpen)
    }
}
