import ChannelsTestSupport
import Foundation
import Testing

/// The admin page in headless Chromium (Debian's chromium, `Browser/admin_page.py`) on two nodes sharing
/// Redis: it refuses a wrong key, signs in, sees a group appear when a client joins on the other node, and
/// sends a message from its form that the client receives; its screenshot is the one in the README
/// (`docs/admin-page.png`, copied from `.build/admin-page.png`).
@Suite struct AdminPageTests {
    @Test func signInWatchAGroupAppearAndSendToIt() async throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let script = root.appendingPathComponent("Tests/NodeBrowserTests/Browser/admin_page.py").path
        let screenshot = root.appendingPathComponent(".build/admin-page.png").path
        try? FileManager.default.removeItem(atPath: screenshot)
        let key = "admin-page-test-key-0123456789"
        let redis = try await RedisServer.start()
        let keys = try apiKeyFile([key])
        let nodes = [
            try await NodeProcess.start(redis: [redis.url], nodeID: "node1", arguments: ["--api-key-file", keys]),
            try await NodeProcess.start(redis: [redis.url], nodeID: "node2", arguments: ["--api-key-file", keys]),
        ]
        defer { for node in nodes { node.terminate() } }
        // The page runs no inline script or style: its Content-Security-Policy allows scripts and styles from the node only.
        let page = try await httpRequest(port: nodes[0].port, "GET", "/admin")
        let policy = try #require(page.header("Content-Security-Policy"))
        let directives = Dictionary(
            policy.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }.map { (String($0.prefix { $0 != " " }), $0) },
            uniquingKeysWith: { first, _ in first }
        )
        #expect(directives["script-src"] == "script-src 'self'", "\(policy)")
        #expect(directives["style-src"] == "style-src 'self'", "\(policy)")
        #expect(!policy.contains("unsafe-inline"), "\(policy)")
        #expect(!page.body.contains("<script>") && !page.body.contains("<style>") && !page.body.contains("style=\""))
        for (path, type) in [("/admin/admin.js", "text/javascript"), ("/admin/admin.css", "text/css")] {
            let resource = try await httpRequest(port: nodes[0].port, "GET", path)
            #expect(resource.status == 200 && resource.header("Content-Type")?.hasPrefix(type) == true, "\(path): \(resource.status)")
        }
        // Some traffic for the page to show.
        var lobby: [ChatClient] = []
        for node in nodes + nodes { lobby.append(try await ChatClient.connect(port: node.port, room: "lobby")) }
        lobby[0].say("good morning")

        let browser = try PythonProcess(
            python: try PythonProcess.interpreter(packageRoot: root), script: script, arguments: [String(nodes[0].port), key, screenshot]
        )
        defer { browser.terminate() }
        let signedIn = try await browser.nextLine(timeout: .seconds(60))
        try #require(signedIn == "SIGNED_IN", "\(signedIn)\n\(browser.standardError)")
        // Joins after the page is live: the page must show the group appear.
        let client = try await ChatClient.connect(port: nodes[1].port, room: "admin")
        let sent = try await browser.nextLine(timeout: .seconds(60))
        try #require(sent == "SENT", "\(sent)\n\(browser.standardError)")
        #expect(await client.waitForFrames(1))
        #expect(client.messages == ["hello from the admin page"])
        let result = try await browser.nextLine(timeout: .seconds(60))
        #expect(result == "OK", "\(result)\n\(browser.standardError)")
        #expect(await browser.wait() == 0)
        #expect(FileManager.default.fileExists(atPath: screenshot))
    }
}
