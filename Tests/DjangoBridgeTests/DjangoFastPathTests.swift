import ChannelsTestSupport
import ChannelsWebSocketClient
import Foundation
import Testing

/// What the fast path (SWIFT_CHANNELS_FORWARD) gives bridged connections in history groups, as for Swift
/// consumers: numbered frames, recovery after a reconnect to any node, presence with the Django user, and the
/// nodes' /channels.js reconnecting and recovering when a worker dies.
@Suite(.serialized) struct DjangoFastPathTests {
    static let loginScript = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Scripts/login.sh").path

    @Test func recoveryAndPresenceWorkForBridgedConnections() async throws {
        let redis = try await RedisServer.start()
        let project = try await DjangoChatProject(redisURL: redis.url, layer: "pubsub")
        let http = try await project.startHTTP(demoUser: "ada:lovelace-1815")
        defer { http.process.terminate() }
        let worker = try await project.startWorker()
        defer { worker.terminate() }
        let nodes = try await project.startNodes(redis: redis.url, hearing: 1)
        defer { for node in nodes { node.terminate() } }
        let login = try await run("/bin/bash", [Self.loginScript, "http://127.0.0.1:\(http.port)", "ada", "lovelace-1815"], environment: [:])
        let cookie = try #require(login.output.split(separator: "\n").last.map(String.init), "\(login.output)")

        // Presence: SWIFT_CHANNELS_PRESENCE lists ChatConsumer; the node joins with the worker's Django user.
        let ada = try await FrameClient.connect(
            port: nodes[0].port, path: "/ws/chat/lobby/?presence=1&recover=1", headers: [FrameClient.origin, ("Cookie", cookie)]
        )
        #expect(await ada.waitForFrames(2))
        let adaPresence = try #require(ada.objects.first { $0["type"] as? String == "presence" }, "\(ada.frames)")
        #expect((adaPresence["members"] as? [[String: Any]])?.compactMap { $0["user"] as? String } == ["ada"])
        let fresh = try #require(ada.objects.first { $0["type"] as? String == "recovery" })
        #expect(fresh["recovered"] as? Bool == true)
        let bob = try await FrameClient.connect(port: nodes[1].port, path: "/ws/chat/lobby/?presence=1")
        #expect(await bob.waitForFrames(1))
        #expect((bob.objects.first?["members"] as? [[String: Any]])?.count == 2)
        #expect(await eventually { ada.objects.contains { $0["type"] as? String == "join" && $0["channel"] as? String != adaPresence["channel"] as? String } })

        // Not an event stream: Django's consumer would be told of a WebSocket it does not have.
        let stream = try await EventStreamClient.connect(port: nodes[0].port, path: "/ws/chat/lobby/", headers: [FrameClient.origin, ("Cookie", cookie)])
        #expect(await stream.waitForStatus() == 406)
        #expect(stream.body.contains("WebSocket only"))

        // Chat through the fast path: frames carry the history's offset and epoch.
        for text in ["one", "two", "three"] { try bob.send(json: ["message": text]) }
        #expect(await eventually { Self.chat(ada).count == 3 })
        let seen = Self.chat(ada)
        #expect(seen.map(\.message) == ["one", "two", "three"])
        let epoch = try #require(seen.last?.epoch)
        let offset = try #require(seen.last?.offset)
        #expect(seen.map(\.offset) == [offset - 2, offset - 1, offset])

        // Ada leaves; what she misses is replayed when she comes back, to the other node.
        await ada.client.close()
        for text in ["four", "five"] { try bob.send(json: ["message": text]) }
        #expect(await eventually { Self.chat(bob).count == 5 })
        let back = try await FrameClient.connect(
            port: nodes[1].port, path: "/ws/chat/lobby/?recover=1&epoch=\(epoch)&offset=\(offset)", headers: [FrameClient.origin, ("Cookie", cookie)]
        )
        try bob.send(json: ["message": "six"])
        #expect(await eventually { Self.chat(back).count == 3 })
        let recovery = try #require(back.objects.first)
        #expect(recovery["type"] as? String == "recovery" && recovery["recovered"] as? Bool == true, "\(back.frames)")
        #expect(Self.chat(back).map(\.message) == ["four", "five", "six"])
        #expect(Self.chat(back).map(\.offset) == [offset + 1, offset + 2, offset + 3])
    }

    /// The chat frames of a client: message, offset, epoch.
    static func chat(_ client: FrameClient) -> [(message: String, offset: Int, epoch: String)] {
        client.objects.compactMap { object in
            guard let message = object["message"] as? String, let offset = object["offset"] as? Int, let epoch = object["epoch"] as? String else { return nil }
            return (message, offset, epoch)
        }
    }

    @Test func channelsJsReconnectsAndRecoversWhenItsWorkerDies() async throws {
        let redis = try await RedisServer.start()
        let project = try await DjangoChatProject(redisURL: redis.url, layer: "pubsub")
        let http = try await project.startHTTP()
        defer { http.process.terminate() }
        let first = try await project.startWorker()
        defer { first.terminate() }
        let nodes = try await project.startNodes(redis: redis.url, hearing: 1)
        defer { for node in nodes { node.terminate() } }
        let front = try await HAProxyFront.start(nodes: nodes.map(\.port), django: http.port)

        let root = ScriptedCluster.packageRoot
        let browser = try PythonProcess(
            python: try PythonProcess.interpreter(packageRoot: root),
            script: root.appendingPathComponent("Tests/DjangoBridgeTests/Browser/channels_js_page.py").path,
            arguments: ["http://127.0.0.1:\(front.port)"]
        )
        let connected = try await browser.nextLine(timeout: .seconds(60))
        try #require(connected == "CONNECTED", "\(connected)\n\(browser.standardError)")
        // The page is on the only worker; a second one comes, and the first dies.
        let second = try await project.startWorker()
        defer { second.terminate() }
        for node in nodes { try await DjangoChatProject.waitForWorkers(2, on: node) }
        first.kill()
        let result = try await browser.nextLine(timeout: .seconds(90))
        #expect(result == "OK", "\(result)\n\(browser.standardError)")
    }
}
