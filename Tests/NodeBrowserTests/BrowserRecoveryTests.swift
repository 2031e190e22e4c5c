import ChannelsTestSupport
import Foundation
import Testing

/// The demo page on channels.js behind the scripted cluster, in headless Chromium (`Browser/recovery_page.py`):
/// page A's node is SIGKILLed, A reconnects through haproxy, and every message page B sent meanwhile appears
/// on A once, in order.
@Suite struct BrowserRecoveryTests {
    @Test func aPageWhoseNodeDiesMissesNothing() async throws {
        let cluster = try await ScriptedCluster.up(nodes: 3)
        defer { Task { _ = try? await cluster.script("down") } }
        let root = ScriptedCluster.packageRoot
        let browser = try PythonProcess(
            python: try PythonProcess.interpreter(packageRoot: root),
            script: root.appendingPathComponent("Tests/NodeBrowserTests/Browser/recovery_page.py").path,
            arguments: [
                String(cluster.port), cluster.redisURL, cluster.directory, try builtProduct("channels-ctl"),
                root.appendingPathComponent(".build/recovery-page.png").path,
            ]
        )
        let result = try await browser.nextLine(timeout: .seconds(90))
        #expect(result == "OK", "\(result)\n\(browser.standardError)")
        #expect(await browser.wait() == 0)
    }
}
