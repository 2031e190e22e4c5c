import ChannelsTestSupport
import Foundation
import HiredisClient
import Synchronization
import Testing

@Suite(.serialized) struct RedisClusterTests {
    @Test func commandsGoToTheirSlotsPrimaryAndFollowAReshard() async throws {
        let cluster = try await RedisClusterServers.start()
        let client = try RedisClusterClient(seeds: try RedisClusterClient.seeds(from: [cluster.seeds[0]]))
        let keys = (0..<60).map { "key-\($0)" }
        for key in keys { _ = try await client.send(RedisCommand("SET", .string(key), .string("v-\(key)"))) }
        let topology = try await client.currentTopology()
        #expect(topology.primaries.count == 3)
        #expect(Set(keys.compactMap { topology.primary(for: $0) }).count == 3)
        let replies = try await client.pipeline(keys.map { RedisCommand("GET", .string($0)) })
        #expect(replies.map(\.string) == keys.map { "v-\($0)" })

        // Slots move under the client: MOVED replies send it to the new owner and it reads the map again.
        let source = try await cluster.primary(for: "key-1")
        let target = try #require(cluster.servers.first { $0.port != source.port && topology.primaries.contains(.init(host: "127.0.0.1", port: $0.port)) })
        let refreshesBefore = client.topologyRefreshes
        try await cluster.reshard(slots: 5461, from: source, to: target)
        let after = try await client.pipeline(keys.map { RedisCommand("GET", .string($0)) })
        #expect(after.map(\.string) == keys.map { "v-\($0)" })
        #expect(await eventually { client.topologyRefreshes > refreshesBefore })
        await client.close()
    }

    @Test func shardedSubscriptionsFollowAFailover() async throws {
        let cluster = try await RedisClusterServers.start()
        let client = try RedisClusterClient(seeds: try RedisClusterClient.seeds(from: cluster.seeds))
        let received = Mutex<[String: Int]>([:])
        let subscriber = RedisClusterSubscriber(client: client, checkInterval: .seconds(1)) { messages in
            received.withLock { for message in messages { $0[message.channel, default: 0] += 1 } }
            return true
        }
        let runner = Task { await subscriber.run() }
        defer { runner.cancel() }
        let channels = (0..<12).map { "room-\($0)" }
        try await subscriber.subscribe(channels)
        let topology = try await client.currentTopology()
        #expect(Set(channels.compactMap { topology.primary(for: $0) }).count == 3, "channels spread over every shard")
        for channel in channels {
            let reply = try await client.send(RedisCommand("SPUBLISH", .string(channel), "hello"))
            #expect(reply.integer == 1, "one subscriber on \(channel)'s primary")
        }
        #expect(await eventually { received.withLock { $0.count } == channels.count })

        let victim = try await cluster.primary(for: channels[0])
        let killed = ContinuousClock.now
        victim.kill()
        // Publish to every channel until each is delivered again.
        var outage: Duration?
        let deadline = ContinuousClock.now + .seconds(40)
        let start = received.withLock { $0 }
        while ContinuousClock.now < deadline {
            for channel in channels { _ = try? await client.send(RedisCommand("SPUBLISH", .string(channel), "again")) }
            let now = received.withLock { $0 }
            if channels.allSatisfy({ (now[$0] ?? 0) > (start[$0] ?? 0) }) {
                outage = ContinuousClock.now - killed
                break
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        let delivered = try #require(outage, "every channel delivers again after the failover")
        print("redis cluster failover: delivery out for \(delivered) (node timeout 2 s)")
        #expect(try await client.currentTopology().primaries.allSatisfy { $0.port != victim.port })
        await client.close()
    }
}
