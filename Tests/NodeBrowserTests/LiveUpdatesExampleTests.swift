import ChannelsTestSupport
import ChannelsWebSocketClient
import Foundation
import Synchronization
import Testing

/// Seed 002's app end to end: the Django REST example (`examples/django-live-updates`) saves a model, its
/// signal group-sends the change through Redis, and a WebSocket client of a Swift node receives it; on
/// both of channels_redis' layers.
@Suite(.serialized) struct LiveUpdatesExampleTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let example = root.appendingPathComponent("examples/django-live-updates")

    @Test(arguments: ["pubsub", "core"])
    func aModelSavedThroughTheRESTAPIReachesAWebSocketClientOnASwiftNode(layer: String) async throws {
        let redis = try await RedisServer.start()
        let node = try await NodeProcess.start(redis: [redis.url], arguments: ["--layer", layer, "--history", "none"])
        defer { node.terminate() }
        let port = try freePort()
        let database = FileManager.default.temporaryDirectory.appendingPathComponent("live-updates-\(port).sqlite3").path
        defer { try? FileManager.default.removeItem(atPath: database) }
        let environment = [
            "CHANNELS_REDIS_URL": redis.url, "CHANNELS_LAYER": layer, "DJANGO_PORT": String(port), "DJANGO_DB_PATH": database,
            "CHANNELS_WS_URL": "ws://127.0.0.1:\(node.port)",
        ]
        let django = try PythonProcess(python: "/bin/bash", script: Self.example.appendingPathComponent("run").path, arguments: [], environment: environment)
        defer { django.terminate() }
        var line = ""
        while !line.hasPrefix("django-live-updates: ") { line = try await django.nextLine(timeout: .seconds(60)) }

        let frames = Mutex<[String]>([])
        let client = try await WebSocketClient.connect(
            host: "127.0.0.1", port: node.port, path: "/ws/updates/item/",
            onMessage: { message in if case .text(let text) = message { frames.withLock { $0.append(text) } } }
        )
        // The page's own request works, and it points at the node.
        let page = try await httpGet(port: port, path: "/")
        #expect(page.status == 200 && page.body.contains("ws://127.0.0.1:\(node.port)"))

        let rest = try PythonProcess(
            python: try PythonProcess.interpreter(packageRoot: Self.root), script: Self.example.appendingPathComponent("check_updates.py").path,
            arguments: ["http://127.0.0.1:\(port)", "from the test"], environment: environment
        )
        let pk = try #require(Int(try await rest.nextLine()), "check_updates.py: \(rest.standardError)")
        #expect(await eventually { frames.withLock { $0.count } >= 3 })
        let received = try frames.withLock { $0 }.map { try #require(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]) }
        #expect(received.map { $0["action"] as? String } == ["created", "updated", "deleted"])
        #expect(received.allSatisfy { $0["model"] as? String == "item" && $0["pk"] as? Int == pk })
        #expect(received.allSatisfy { Set($0.keys) == ["action", "model", "pk", "data"] })
        #expect((received.first?["data"] as? [String: Any])?["name"] as? String == "from the test")
        #expect((received[1]["data"] as? [String: Any])?["done"] as? Bool == true)

        // A client frame is refused; a model name that is no group name is rejected with the reason.
        client.send(text: "hello")
        #expect(await eventually { frames.withLock { $0.last?.contains("invalid_frame") == true } })
        let bad = try await WebSocketClient.connect(host: "127.0.0.1", port: node.port, path: "/ws/updates/no%20spaces!/", onMessage: { _ in })
        let close = await bad.closed(timeout: .seconds(5))
        #expect(close?.code == 1008 && close?.reason.contains("invalid model") == true)
        await client.close()

        // And the example's own page, in headless Chromium, shows a change made elsewhere without a reload.
        let browser = try PythonProcess(
            python: try PythonProcess.interpreter(packageRoot: Self.root),
            script: Self.root.appendingPathComponent("Tests/NodeBrowserTests/Browser/live_updates_page.py").path,
            arguments: ["http://127.0.0.1:\(port)/"]
        )
        let result = try await browser.nextLine(timeout: .seconds(60))
        #expect(result == "OK", "\(result)\n\(browser.standardError)")
    }
}
