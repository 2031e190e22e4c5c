import ChannelsTestSupport
import ChannelsWebSocketClient
import Foundation
import HiredisClient
import Testing

/// `channels-node --redis-cluster` on a real 3-primary, 3-replica Redis Cluster: the issue's wire contract
/// (chat across nodes in every room over `SPUBLISH`, again after a primary is SIGKILLed and its replica
/// promoted), a reshard under traffic, and `channels-ctl` across the primaries.
@Suite(.serialized) struct RedisClusterNodeTests {
    /// Rooms whose groups' slots (`asgi__group__{chat_<room>}`) cover every primary.
    static func rooms(spreadOver topology: RedisClusterTopology) -> [String] {
        var chosen: [String] = []
        var covered: Set<RedisClusterTopology.Node> = []
        for index in 0..<200 where covered.count < topology.primaries.count || chosen.count < 6 {
            let room = "r\(index)"
            guard let node = topology.primary(for: "asgi__group__{chat_\(room)}") else { continue }
            if !covered.contains(node) || chosen.count < 6 {
                covered.insert(node)
                chosen.append(room)
            }
        }
        return chosen
    }

    func startNodes(_ cluster: RedisClusterServers, count: Int = 2) async throws -> [NodeProcess] {
        var nodes: [NodeProcess] = []
        for index in 0..<count {
            // One seed each, a different one: the rest of the cluster is discovered.
            nodes.append(try await NodeProcess.start(nodeID: "cluster-node-\(index)", arguments: ["--redis-cluster", cluster.seeds[index]]))
        }
        return nodes
    }

    /// A client per node per room; returns them by room.
    func connect(_ rooms: [String], to nodes: [NodeProcess]) async throws -> [String: [ChatClient]] {
        var clients: [String: [ChatClient]] = [:]
        for room in rooms {
            for node in nodes { clients[room, default: []].append(try await ChatClient.connect(port: node.port, room: room)) }
        }
        return clients
    }

    /// Says `text` in every room from the first node's client; whether every client of the room got it.
    func everyRoomDelivers(_ clients: [String: [ChatClient]], text: String) async -> Bool {
        for (room, members) in clients { members[0].say("\(text) \(room)") }
        for (room, members) in clients {
            for member in members where await !eventually(timeout: .seconds(3), { member.messages.contains("\(text) \(room)") }) {
                return false
            }
        }
        return true
    }

    /// A cluster, two nodes, rooms on every shard with a client per node, every room delivering.
    struct ChatOnCluster {
        let cluster: RedisClusterServers
        let nodes: [NodeProcess]
        let client: RedisClusterClient
        let topology: RedisClusterTopology
        let rooms: [String]
        let clients: [String: [ChatClient]]
    }

    func chatOnCluster() async throws -> ChatOnCluster {
        let cluster = try await RedisClusterServers.start()
        let nodes = try await startNodes(cluster)
        let client = try RedisClusterClient(seeds: try RedisClusterClient.seeds(from: cluster.seeds))
        let topology = try await client.currentTopology()
        let rooms = Self.rooms(spreadOver: topology)
        let clients = try await connect(rooms, to: nodes)
        #expect(await everyRoomDelivers(clients, text: "before"))
        return ChatOnCluster(cluster: cluster, nodes: nodes, client: client, topology: topology, rooms: rooms, clients: clients)
    }

    @Test func chatCrossesNodesInEveryRoomAndSurvivesAPrimaryKilled() async throws {
        let setup = try await chatOnCluster()
        let (cluster, nodes, client, topology, rooms) = (setup.cluster, setup.nodes, setup.client, setup.topology, setup.rooms)
        var clients = setup.clients
        defer { for node in nodes { node.terminate() } }

        // Sharded pub/sub: SPUBLISH calls on the primaries, no PUBLISH.
        var spublish = 0
        var publish = 0
        for node in topology.primaries {
            let stats = try await client.client(for: node).send(RedisCommand("INFO", "commandstats")).string ?? ""
            spublish += Self.calls("spublish", in: stats)
            publish += Self.calls("publish", in: stats)
        }
        #expect(spublish >= rooms.count && publish == 0, "spublish \(spublish), publish \(publish)")

        let victim = try await cluster.primary(for: "asgi__group__{chat_\(rooms[0])}")
        let victimNode = try #require(topology.primary(for: "asgi__group__{chat_\(rooms[0])}"))
        let freshRoom = try #require((0..<2000).map { "fresh\($0)" }.first { topology.primary(for: "asgi__group__{chat_\($0)}") == victimNode })
        let killed = ContinuousClock.now
        victim.kill()
        // A new connection to a room of the dead shard, before the failover: answered at once, refused with
        // 1013 (try again later) or accepted, never left hanging until the handshake times out.
        let asked = ContinuousClock.now
        let fresh = try await WebSocketClient.connect(host: "127.0.0.1", port: nodes[0].port, path: "/ws/chat/\(freshRoom)/")
        let refusal = await fresh.closed(timeout: .seconds(2))
        let answeredIn = ContinuousClock.now - asked
        #expect(refusal == nil || refusal?.code == 1013, "a dead shard's room: \(String(describing: refusal))")
        #expect(answeredIn < .seconds(4), "answered in \(answeredIn)")
        print("redis cluster: a new connection to a room of the killed primary's shard was \(refusal == nil ? "accepted" : "refused with \(refusal!.code ?? 0)") in \(answeredIn)")
        var outage: Duration?
        var round = 0
        while ContinuousClock.now - killed < .seconds(60) {
            round += 1
            // A client closed by its node (none should be) comes back, as a browser would.
            for (room, members) in clients {
                for (index, member) in members.enumerated() where !member.client.isOpen {
                    clients[room]![index] = try await ChatClient.connect(port: nodes[index].port, room: room)
                }
            }
            if await everyRoomDelivers(clients, text: "after-\(round)") {
                outage = ContinuousClock.now - killed
                break
            }
        }
        let delivered = try #require(outage, "every room delivers again after the failover")
        print("redis cluster failover under chat: every room delivers again \(delivered) after the primary was killed")
        // The members of the killed shard's rooms were told they may have missed messages.
        let told = clients[rooms[0]]!.contains { $0.frames.contains { $0.contains("messages_lost") } }
        #expect(told)
        for node in nodes { #expect(node.isRunning) }
        await client.close()
    }

    @Test func aReshardUnderTrafficKeepsEveryRoomDelivering() async throws {
        let setup = try await chatOnCluster()
        let (cluster, nodes, client, topology, rooms, clients) = (setup.cluster, setup.nodes, setup.client, setup.topology, setup.rooms, setup.clients)
        defer { for node in nodes { node.terminate() } }

        let source = try await cluster.primary(for: "asgi__group__{chat_\(rooms[0])}")
        let target = try #require(cluster.servers.first { server in server.port != source.port && topology.primaries.contains { $0.port == server.port } })
        let traffic = Task {
            var sent = 0
            while !Task.isCancelled {
                for (room, members) in clients { members[1].say("during \(room) \(sent)") }
                sent += 1
                try? await Task.sleep(for: .milliseconds(50))
            }
            return sent
        }
        let started = ContinuousClock.now
        try await cluster.reshard(slots: 5461, from: source, to: target)
        let resharded = ContinuousClock.now - started
        try await Task.sleep(for: .seconds(1))
        traffic.cancel()
        _ = await traffic.value
        var outage: Duration?
        let after = ContinuousClock.now
        for round in 0..<20 {
            if await everyRoomDelivers(clients, text: "after-\(round)") {
                outage = ContinuousClock.now - after
                break
            }
        }
        let restored = try #require(outage, "every room delivers after the slots moved")
        print("redis cluster reshard of 5461 slots under chat: took \(resharded); every room delivered again within \(restored) after")
        #expect(try await client.refreshTopology().primary(for: "asgi__group__{chat_\(rooms[0])}")?.port == target.port)
        await client.close()
    }

    @Test func channelsCtlAndTheHTTPAPIReadAndSendAcrossThePrimaries() async throws {
        let cluster = try await RedisClusterServers.start()
        let key = "cluster-api-key-0123456789abcdef"
        let nodes = [try await NodeProcess.start(nodeID: "cluster-api", arguments: ["--redis-cluster", cluster.seeds[0], "--api-key-file", try apiKeyFile([key])])]
        defer { for node in nodes { node.terminate() } }
        let rooms = ["alpha", "beta", "gamma", "delta"]
        let clients = try await connect(rooms, to: nodes)
        let ctl = try builtProduct("channels-ctl")
        let environment = ["CHANNELS_REDIS_CLUSTER": cluster.seeds.joined(separator: ",")]
        #expect(await eventually {
            let groups = try? await run(ctl, ["groups", "chat_*", "--json"], environment: environment)
            return rooms.allSatisfy { groups?.output.contains("chat_\($0)") == true }
        })
        let members = try await run(ctl, ["members", "chat_beta", "--redis-cluster", cluster.seeds[2]], environment: [:])
        #expect(members.status == 0 && members.output.contains(nodes[0].nodeID), "\(members.output)")
        let sent = try await run(ctl, ["send", "chat_gamma", #"{"type": "chat.message", "message": "from ctl"}"#], environment: environment)
        #expect(sent.status == 0, "\(sent.output)")
        #expect(await clients["gamma"]![0].waitForFrames(1))
        #expect(clients["gamma"]![0].messages == ["from ctl"])

        // The HTTP API lists the groups from the registry spread over the primaries, and sends into them.
        let listed = try await httpRequest(port: nodes[0].port, "GET", "/api/groups?pattern=chat_*", key: key)
        #expect(listed.status == 200 && rooms.allSatisfy { listed.body.contains("chat_\($0)") }, "\(listed.body)")
        let sentByAPI = try await httpRequest(port: nodes[0].port, "POST", "/api/groups/chat_delta/send", key: key, json: #"{"type": "chat.message", "message": "from the API"}"#)
        #expect(sentByAPI.status == 202)
        #expect(await clients["delta"]![0].waitForFrames(1))
        #expect(clients["delta"]![0].messages == ["from the API"])
        // The node reports the layer it runs: pub/sub over the cluster, not the in-memory one.
        let reported = try await httpRequest(port: nodes[0].port, "GET", "/api/nodes", key: key)
        #expect(reported.status == 200 && reported.body.contains(#""layer":"pubsub""#) && !reported.body.contains(#""layer":"memory""#), "\(reported.body)")
    }

    @Test func badClusterSettingsStopTheNodeWithTheReason() async throws {
        let cases: [([String], String)] = [
            (["--redis-cluster", "127.0.0.1:1", "--redis", "redis://127.0.0.1:2"], "not both"),
            (["--redis-cluster", "127.0.0.1:1", "--layer", "core"], "cannot run on Redis Cluster"),
            (["--redis-cluster", "127.0.0.1:1/3"], "only database 0"),
            (["--redis-cluster", "unix:///tmp/redis.sock"], "not HOST:PORT"),
        ]
        for (arguments, reason) in cases {
            let node = try await NodeProcess.start(arguments: arguments, waitForReady: false)
            #expect(await node.exitStatus(timeout: .seconds(10)) != 0)
            #expect(node.log.contains(reason), "\(arguments): \(node.log)")
        }
    }

    static func calls(_ command: String, in stats: String) -> Int {
        guard let line = stats.split(whereSeparator: \.isNewline).first(where: { $0.hasPrefix("cmdstat_\(command):") }),
            let field = line.split(separator: ",").first(where: { $0.contains("calls=") }), let value = field.split(separator: "=").last
        else { return 0 }
        return Int(value) ?? 0
    }
}
