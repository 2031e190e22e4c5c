import ChannelsTestSupport
import Foundation
import Testing

/// The demo page in headless Chromium (Debian's chromium), driven through the DevTools protocol:
/// two pages in one room see each other's messages.
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
    }
}
