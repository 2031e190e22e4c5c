import ChannelsTestSupport
import Foundation
import Testing

/// The demo page in headless Chromium (Debian's chromium), driven through the DevTools protocol:
/// two pages in one room see each other's messages, over permessage-deflate.
@Suite struct BrowserChatTests {
    @Test func twoPagesInOneRoomSeeEachOthersMessages() async throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let script = root.appendingPathComponent("Tests/NodeBrowserTests/Browser/chat_page.py").path
        let screenshot = root.appendingPathComponent(".build/chat-page.png").path
        let node = try await NodeProcess.start()
        let browser = try PythonProcess(
            python: try PythonProcess.interpreter(packageRoot: root), script: script, arguments: [String(node.port), screenshot]
        )
        let result = try await browser.nextLine(timeout: .seconds(60))
        #expect(result == "OK", "\(result)\n\(browser.standardError)")
        #expect(await browser.wait() == 0)
        #expect(FileManager.default.fileExists(atPath: screenshot))
        // Chromium offers permessage-deflate on every WebSocket: both pages' connections agreed on it.
        let metrics = try await node.get("/metrics").body
        let compressed = metrics.split(separator: "\n").first { $0.hasPrefix("channels_compressed_connections_total ") }
        #expect(compressed.flatMap { Double($0.split(separator: " ").last ?? "") }.map { $0 >= 2 } == true, "\(compressed ?? "none")")
    }
}
