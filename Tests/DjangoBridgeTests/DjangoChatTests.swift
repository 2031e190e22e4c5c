import ChannelsTestSupport
import ChannelsWebSocketClient
import Foundation
import Testing

/// Seed 004's Django project (`examples/django-chat`), unchanged, behind two nodes and two workers on one Redis:
/// the tutorial ChatConsumer across nodes, a view's group_send, channels-ctl listing the node's members; on both
/// channels_redis layers, with and without the fast path.
@Suite(.serialized) struct DjangoChatTests {
    /// Django's AllowedHostsOriginValidator wants a browser's Origin from ALLOWED_HOSTS.
    static let origin = [("Origin", "http://127.0.0.1:8001")]

    @Test(arguments: [("pubsub", true), ("pubsub", false), ("core", true), ("core", false)])
    func chatAcrossTwoNodesAndTwoWorkers(layer: String, fastPath: Bool) async throws {
        let redis = try await RedisServer.start()
        let project = try await DjangoChatProject(redisURL: redis.url, layer: layer, fastPath: fastPath)
        let workers = [try await project.startWorker(), try await project.startWorker()]
        defer { for worker in workers { worker.terminate() } }
        let nodes = try await project.startNodes(redis: redis.url, hearing: 2)
        defer { for node in nodes { node.terminate() } }

        var clients: [ChatClient] = []
        for index in 0..<6 { clients.append(try await ChatClient.connect(port: nodes[index % 2].port, room: "lobby", headers: Self.origin)) }
        for (index, client) in clients.enumerated() { client.say("m\(index)") }
        let sent = Set((0..<6).map { "m\($0)" })
        for client in clients {
            #expect(await client.waitForFrames(6), "got \(client.frames)")
            #expect(Set(client.messages) == sent)
        }
        // The fast path writes chat messages on the nodes: the workers got only the connects and the client frames.
        // Without it every member's message went to its worker's chat_message handler.
        var events = 0.0
        for node in nodes { events += try await DjangoChatProject.metric("channels_django_events_total", on: node) ?? -1 }
        #expect(events == (fastPath ? 12 : 12 + 36))

        // The connections' channels are the nodes' members of the group.
        let listing = try await run(try builtProduct("channels-ctl"), ["members", "chat_lobby", "--redis", redis.url, "--layer", layer, "--json"], environment: [:])
        let members = try #require(try JSONSerialization.jsonObject(with: Data(listing.output.utf8)) as? [[String: Any]], "\(listing.output)")
        #expect(members.count == 6)
        #expect(Set(members.compactMap { $0["node"] as? String }) == Set(nodes.map(\.nodeID)))

        // A Django view's group_send reaches every client, whichever node holds it.
        let http = try await project.startHTTP()
        defer { http.process.terminate() }
        let answer = try await httpRequest(
            port: http.port, "POST", "/chat/lobby/announce/", body: Data("message=from+the+view".utf8),
            headers: ["Content-Type": "application/x-www-form-urlencoded"]
        )
        #expect(answer.status == 200, "\(answer.body)")
        for client in clients {
            #expect(await client.waitForFrames(7))
            #expect(client.messages.last == "from the view")
        }
        for client in clients { await client.client.close() }
    }
}
