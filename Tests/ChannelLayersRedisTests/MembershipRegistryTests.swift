import ChannelLayers
import ChannelLayersRedis
import ChannelsProtocol
import ChannelsTestSupport
import HiredisClient
import Testing

@Suite struct MembershipRegistryTests {
    @Test func membershipsAreReadableWithPlainCommandsAndLeaveWithTheNode() async throws {
        let server = try await RedisServer.start()
        let redis = try await server.inspector()
        let layer = try RedisPubSubChannelLayer(configuration: server.layerConfiguration(nodeID: "node-a"))
        let runner = Task { try await layer.run() }

        let first = try await layer.newChannel()
        let second = try await layer.newChannel()
        try await layer.groupAdd("chat_lobby", channel: first)
        try await layer.groupAdd("chat_lobby", channel: second)
        try await layer.groupAdd("chat_other", channel: first)

        let key = "asgi:registry:group:chat_lobby:node-a"
        #expect(await eventually { (try? await redis.send("HLEN", .string(key)).integer) == 2 })
        let joinedAt = try #require(try await redis.send("HGET", .string(key), .string(first)).string.flatMap(Double.init))
        #expect(abs(joinedAt - WallClock.now()) < 60)
        #expect(try await redis.send("TTL", .string(key)).integer.map { $0 > 0 && $0 <= 30 } == true)

        #expect(await eventually { (try? await redis.send("HGET", "asgi:registry:node:node-a", "groups").string) == "2" })
        #expect(try await redis.send("HGET", "asgi:registry:node:node-a", "channels").string == "2")
        #expect(try await redis.send("ZSCORE", "asgi:registry:nodes", "node-a").isNull == false)

        try await layer.groupDiscard("chat_lobby", channel: second)
        #expect(await eventually { (try? await redis.send("HKEYS", .string(key)))?.array == [.bulkString(Array(first.utf8))] })

        // A graceful stop takes the node's entries with it.
        runner.cancel()
        _ = try? await runner.value
        #expect(try await redis.send("EXISTS", .string(key), "asgi:registry:node:node-a", "asgi:registry:group:chat_other:node-a") == .integer(0))
        #expect(try await redis.send("ZSCORE", "asgi:registry:nodes", "node-a").isNull)
    }

    @Test func entriesOfANodeThatStopsBeatingVanishOnTheirOwn() async throws {
        let server = try await RedisServer.start()
        let redis = try await server.inspector()
        var configuration = server.layerConfiguration(nodeID: "node-silent")
        configuration.registryTTL = .seconds(1)
        configuration.heartbeatInterval = .seconds(3600)  // one beat at start, then silence, as if it died
        try await withRedisLayers([configuration]) { layers in
            let channel = try await layers[0].newChannel()
            try await layers[0].groupAdd("room", channel: channel)
            #expect(await eventually { (try? await redis.send("EXISTS", "asgi:registry:group:room:node-silent")) == .integer(1) })
            let vanished = await eventually(timeout: .seconds(5)) {
                (try? await redis.send("EXISTS", "asgi:registry:group:room:node-silent", "asgi:registry:node:node-silent")) == .integer(0)
            }
            #expect(vanished)
        }
    }

    @Test func registryComesBackAfterRedisLosesItsData() async throws {
        let server = try await RedisServer.start()
        var configuration = server.layerConfiguration(nodeID: "node-a")
        configuration.heartbeatInterval = .seconds(3600)
        try await withRedisLayers([configuration]) { layers in
            let channel = try await layers[0].newChannel()
            try await layers[0].groupAdd("room", channel: channel)
            server.kill()
            try await server.restart()
            let redis = try await server.inspector()
            // Not from a heartbeat (an hour away): from the resubscription after the restart.
            let restored = await eventually {
                (try? await redis.send("HEXISTS", "asgi:registry:group:room:node-a", .string(channel))) == .integer(1)
            }
            #expect(restored)
        }
    }
}
