import ChannelsTestSupport
import ChannelsWebSocketClient
import Foundation
import HiredisClient
import Testing

/// Redis plus three real `channels-node` processes, and WebSocket clients spread over them.
@Suite(.serialized) struct ClusterChatTests {
    struct Cluster {
        let redis: RedisServer
        let nodes: [NodeProcess]
    }

    func withCluster<T>(nodes count: Int = 3, _ body: (Cluster) async throws -> T) async throws -> T {
        let redis = try await RedisServer.start()
        let nodes = try await withThrowingTaskGroup(of: NodeProcess.self) { group in
            for index in 0..<count {
                group.addTask { try await NodeProcess.start(redis: [redis.url], nodeID: "node-\(index)-\(redis.port)") }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        return try await body(Cluster(redis: redis, nodes: nodes.sorted { $0.nodeID < $1.nodeID }))
    }

    @Test func everyMemberGetsEveryMessageExactlyOnceAcrossThreeNodes() async throws {
        try await withCluster { cluster in
            var clients: [ChatClient] = []
            for index in 0..<30 {
                clients.append(try await ChatClient.connect(port: cluster.nodes[index % 3].port, room: "lobby"))
            }
            let sent = (0..<5).map { "message-\($0)" }
            for (index, text) in sent.enumerated() { clients[index * 7].say(text) }
            for client in clients { #expect(await client.waitForFrames(5)) }
            // Anything extra would be a duplicate: give it time to show up.
            try await Task.sleep(for: .milliseconds(300))
            for client in clients {
                #expect(client.messages.sorted() == sent)
                #expect(client.frames.allSatisfy { $0.hasPrefix(#"{"message":"#) })
            }
        }
    }

    /// The chat consumer's sends are deferred (queued behind each other, confirmed later): a burst of 300
    /// frames from one client reaches members on its own node and on the others, each once, in the order sent,
    /// through the history script (`chat_*` keeps history), and its history numbers them in that order.
    @Test func aBurstFromOneClientArrivesInOrderOnEveryNode() async throws {
        try await withCluster { cluster in
            var clients: [ChatClient] = []
            for index in 0..<6 {
                clients.append(try await ChatClient.connect(port: cluster.nodes[index % 3].port, room: "burst"))
            }
            let sent = (0..<300).map { "b\($0)" }
            for text in sent { clients[0].say(text) }
            for client in clients { #expect(await client.waitForFrames(300)) }
            try await Task.sleep(for: .milliseconds(300))
            for client in clients { #expect(client.messages == sent) }
            let redis = try await RedisConnection.connect(configuration: cluster.redis.configuration())
            let stream = try await redis.send("XRANGE", "asgi:history:{chat_burst}:stream", "-", "+").array ?? []
            #expect(stream.count == 300)
            #expect(stream.compactMap { $0.array?.first?.string } == (1...300).map { "\($0)-0" })
        }
    }

    @Test func aDisconnectRemovesTheMembership() async throws {
        try await withCluster(nodes: 1) { cluster in
            let node = cluster.nodes[0]
            let redis = try await RedisConnection.connect(configuration: cluster.redis.configuration())
            let key = "asgi:registry:group:chat_solo:\(node.nodeID)"
            let client = try await ChatClient.connect(port: node.port, room: "solo")
            #expect(await eventually { (try? await redis.send("HLEN", .string(key))) == .integer(1) })
            #expect(try await redis.send("PUBSUB", "NUMSUB", "asgi__group__chat_solo").array?.last == .integer(1))

            await client.client.close()
            #expect(await eventually { (try? await redis.send("EXISTS", .string(key))) == .integer(0) })
            #expect(await eventually { (try? await redis.send("PUBSUB", "NUMSUB", "asgi__group__chat_solo"))?.array?.last == .integer(0) })
            await redis.close()
        }
    }

    @Test func aRoomOfOneThousandClients() async throws {
        raiseOpenFileLimit(to: 8192)
        try await withCluster { cluster in
            var clients: [ChatClient] = []
            for start in stride(from: 0, to: 1000, by: 50) {
                let batch = try await withThrowingTaskGroup(of: ChatClient.self) { group in
                    for index in start..<start + 50 {
                        group.addTask { try await ChatClient.connect(port: cluster.nodes[index % 3].port, room: "big") }
                    }
                    return try await group.reduce(into: []) { $0.append($1) }
                }
                clients += batch
            }
            #expect(clients.count == 1000)
            clients[0].say("to everyone")
            var missing = 0
            for client in clients where await !client.waitForFrames(1, timeout: .seconds(20)) { missing += 1 }
            #expect(missing == 0)
            #expect(clients.allSatisfy { $0.messages == ["to everyone"] })
        }
    }

    @Test func aDjangoGroupSendReachesClientsOnSwiftNodes() async throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let python = try PythonProcess.interpreter(packageRoot: root)
        let script = root.appendingPathComponent("Tests/ChannelLayersRedisTests/Interop/channels_interop.py").path
        try await withCluster { cluster in
            var clients: [ChatClient] = []
            for index in 0..<9 { clients.append(try await ChatClient.connect(port: cluster.nodes[index % 3].port, room: "lobby")) }
            let django = try PythonProcess(
                python: python, script: script,
                arguments: ["group-send", cluster.redis.url, "chat_lobby", #"{"type": "chat.message", "message": "hi from django"}"#]
            )
            #expect(try await django.nextLine() == "SENT")
            for client in clients {
                #expect(await client.waitForFrames(1))
                #expect(client.frames == [#"{"message":"hi from django"}"#])
            }
        }
    }

    @Test func gracefulDrainClosesClientsWith1001AndExitsZero() async throws {
        try await withCluster(nodes: 2) { cluster in
            let redis = try await RedisConnection.connect(configuration: cluster.redis.configuration())
            let (draining, staying) = (cluster.nodes[0], cluster.nodes[1])
            var leaving: [ChatClient] = []
            for _ in 0..<20 { leaving.append(try await ChatClient.connect(port: draining.port, room: "drain")) }
            let survivor = try await ChatClient.connect(port: staying.port, room: "drain")
            let key = "asgi:registry:group:chat_drain:\(draining.nodeID)"
            #expect(await eventually { (try? await redis.send("HLEN", .string(key))) == .integer(20) })

            draining.terminate()
            for client in leaving {
                let close = await client.client.closed(timeout: .seconds(15))
                #expect(close?.code == 1001)
            }
            #expect(await draining.exitStatus() == 0)
            #expect(try await redis.send("EXISTS", .string(key)) == .integer(0))
            #expect(try await redis.send("EXISTS", .string("asgi:registry:node:\(draining.nodeID)")) == .integer(0))

            // The rest of the cluster carries on.
            let newcomer = try await ChatClient.connect(port: staying.port, room: "drain")
            newcomer.say("still here")
            #expect(await survivor.waitForFrames(1))
            #expect(survivor.messages == ["still here"])
            await redis.close()
        }
    }
}
