import ChannelsTestSupport
import Foundation
import Testing

/// Server-sent events in headless Chromium behind the scripted cluster (haproxy, three nodes, Redis): a plain
/// `EventSource`, channels.js with `transport: "sse"`, and channels.js falling back from a WebSocket that never
/// opens; the plain reader's node is killed with SIGKILL mid-stream, and every reader still gets every message
/// once and in order.
@Suite(.serialized) struct EventStreamBrowserTests {
    @Test func browsersReadARoomOverServerSentEventsThroughANodeKill() async throws {
        let cluster = try await ScriptedCluster.up()
        defer { Task { _ = try? await cluster.script("down") } }
        let root = ScriptedCluster.packageRoot
        let browser = try PythonProcess(
            python: try PythonProcess.interpreter(packageRoot: root), script: root.appendingPathComponent("Tests/NodeBrowserTests/Browser/event_stream_page.py").path,
            arguments: [String(cluster.port), "20"]
        )
        let ready = try await browser.nextLine(timeout: .seconds(90))
        try #require(ready.hasPrefix("ready "), "\(ready)\n\(browser.standardError)")
        let channel = String(ready.dropFirst(6))

        // The node that serves the plain EventSource, from the registry.
        let listed = try await cluster.ctl("members", "chat_browser", "--json")
        let members = try #require(try JSONSerialization.jsonObject(with: Data(listed.output.utf8)) as? [[String: Any]], "\(listed.output)")
        #expect(members.count == 3)
        let member = members.first { $0["channel"] as? String == channel }
        let nodeName = try #require(member?["node"] as? String, "\(members)")
        let victim = try #require(Int(nodeName.dropFirst(4)))
        let survivor = victim == 1 ? 2 : 1
        let publisher = try await ChatClient.connect(port: cluster.basePort + survivor - 1, room: "browser")

        for index in 0..<10 { publisher.say("m\(index)") }
        #expect(await publisher.waitForFrames(10))
        try await Task.sleep(for: .milliseconds(300))
        try cluster.kill(node: victim)
        // Published while the plain reader is away (its browser waits `retry`, 1 to 3 s, then comes back through haproxy).
        for index in 10..<20 {
            publisher.say("m\(index)")
            try await Task.sleep(for: .milliseconds(100))
        }
        let line = try await browser.nextLine(timeout: .seconds(90))
        let result = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: [String: Any]], "\(line)\n\(browser.standardError)")
        let expected = (0..<20).map { "m\($0)" }
        for name in ["plain", "sse", "fallback"] {
            #expect(result[name]?["got"] as? [String] == expected, "\(name): \(result[name] ?? [:])")
        }
        // The plain reader came back by itself, with Last-Event-ID, to another node.
        #expect((result["plain"]?["opens"] as? Int ?? 0) >= 2, "\(result)")
        #expect((result["plain"]?["lastId"] as? String)?.hasSuffix(":20") == true, "\(result)")
        // The blocked page tried its WebSocket three times, then went on with server-sent events.
        #expect(result["fallback"]?["transport"] as? String == "sse")
        #expect(result["fallback"]?["refusedSockets"] as? Int == 3)
        #expect(await browser.wait() == 0)
    }
}
