import ChannelsTestSupport
import ChannelsWebSocketClient
import Foundation
import Testing

/// Django's session login authenticates the bridged WebSocket: the worker runs AuthMiddlewareStack on the
/// cookie the node passes in the scope; a sync JsonWebsocketConsumer writes with the ORM; Django's own refusals
/// (origin, unknown path) come back as Daphne gives them. Also in headless Chromium behind haproxy.
@Suite(.serialized) struct DjangoAuthTests {
    static let loginScript = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Scripts/login.sh").path
    static let (user, password) = ("ada", "lovelace-1815")

    @Test(arguments: ["pubsub", "core"])
    func djangosLoginAuthenticatesTheWebSocket(layer: String) async throws {
        let redis = try await RedisServer.start()
        let project = try await DjangoChatProject(redisURL: redis.url, layer: layer)
        let http = try await project.startHTTP(demoUser: "\(Self.user):\(Self.password)")
        defer { http.process.terminate() }
        let workers = [try await project.startWorker(), try await project.startWorker(arguments: ["--threads", "2"])]
        defer { for worker in workers { worker.terminate() } }
        let nodes = try await project.startNodes(redis: redis.url, hearing: 2)
        defer { for node in nodes { node.terminate() } }

        let login = try await run("/bin/bash", [Self.loginScript, "http://127.0.0.1:\(http.port)", Self.user, Self.password], environment: [:])
        #expect(login.status == 0, "\(login.output)")
        let cookie = try #require(login.output.split(separator: "\n").last.map(String.init), "\(login.output)")
        #expect(cookie.hasPrefix("sessionid="))

        for node in nodes {
            let known = try await FrameClient.connect(port: node.port, path: "/ws/whoami/", headers: [FrameClient.origin, ("Cookie", "csrftoken=x; \(cookie)")])
            let anonymous = try await FrameClient.connect(port: node.port, path: "/ws/whoami/")
            #expect(await known.waitForFrames(1))
            #expect(await anonymous.waitForFrames(1))
            #expect(known.objects.first?["username"] as? String == Self.user, "\(known.frames)")
            #expect(anonymous.objects.first?["username"] as? String == "")
            await known.client.close()
            await anonymous.client.close()
        }

        // The sync consumer saves with the ORM and group-sends; its handler (no fast path) answers everyone.
        let writer = try await FrameClient.connect(port: nodes[0].port, path: "/ws/notes/", headers: [FrameClient.origin, ("Cookie", cookie)])
        let reader = try await FrameClient.connect(port: nodes[1].port, path: "/ws/notes/")
        try writer.send(json: ["text": "first note"])
        #expect(await writer.waitForFrames(1))
        #expect(await reader.waitForFrames(1))
        try reader.send(json: ["text": "second note"])
        #expect(await writer.waitForFrames(2))
        #expect(await reader.waitForFrames(2))
        for client in [writer, reader] {
            #expect(client.objects.compactMap { $0["text"] as? String } == ["first note", "second note"])
            #expect(client.objects.compactMap { $0["count"] as? Int } == [1, 2])
        }
        let saved = try await run(
            "/bin/bash",
            ["-c", "cd '\(DjangoChatProject.directory.path)' && exec '\(try PythonProcess.interpreter(packageRoot: ScriptedCluster.packageRoot))' manage.py shell -c \"from chat.models import Note; print([(n.text, n.author and n.author.username) for n in Note.objects.order_by('pk')])\""],
            environment: project.environment
        )
        #expect(saved.output.contains("[('first note', 'ada'), ('second note', None)]"), "\(saved.output)")
        await writer.client.close()
        await reader.client.close()

        // Django's refusals, as Daphne answers them: a foreign origin (the validator closes before accept) and a
        // path its URLRouter does not know (it raises).
        #expect(await FrameClient.refusal(port: nodes[0].port, path: "/ws/whoami/", headers: [("Origin", "https://evil.example")]) == 403)
        #expect(await FrameClient.refusal(port: nodes[0].port, path: "/ws/nowhere/") == 500)
        // Paths outside the prefix are still the node's own (the seed's Swift chat serves /ws/chat/ only when
        // no prefix takes it; here the whole /ws/ tree is Django's).
        #expect(try await nodes[0].get("/healthz").status == 200)
    }

    @Test func chromiumLogsInThroughDjangoAndChatsThroughTheNodes() async throws {
        let redis = try await RedisServer.start()
        let project = try await DjangoChatProject(redisURL: redis.url, layer: "pubsub")
        let http = try await project.startHTTP(demoUser: "\(Self.user):\(Self.password)")
        defer { http.process.terminate() }
        let workers = [try await project.startWorker(), try await project.startWorker()]
        defer { for worker in workers { worker.terminate() } }
        let nodes = try await project.startNodes(redis: redis.url, hearing: 2)
        defer { for node in nodes { node.terminate() } }
        let front = try await HAProxyFront.start(nodes: nodes.map(\.port), django: http.port)

        let root = ScriptedCluster.packageRoot
        let browser = try PythonProcess(
            python: try PythonProcess.interpreter(packageRoot: root),
            script: root.appendingPathComponent("Tests/DjangoBridgeTests/Browser/django_login_page.py").path,
            arguments: ["http://127.0.0.1:\(front.port)", Self.user, Self.password]
        )
        let result = try await browser.nextLine(timeout: .seconds(90))
        #expect(result == "OK", "\(result)\n\(browser.standardError)")
    }
}
