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
        let script = root.appendingPathComponent("Tests/ChannelsNodeTests/Browser/admin_page.py").path
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
