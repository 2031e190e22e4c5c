import ChannelsTestSupport
import ChannelsWebSocketClient
import Foundation
import Testing

/// The loopback cluster (haproxy, three nodes, Redis) with clients through haproxy, `channels-ctl` checked
/// against the real state, and a node killed with SIGKILL.
@Suite(.serialized) struct ScriptedClusterTests {
    func json(_ text: String) throws -> Any {
        try JSONSerialization.jsonObject(with: Data(text.utf8))
    }

    @Test func composeAndTheScriptDescribeTheSameTopology() async throws {
        let root = ScriptedCluster.packageRoot.path
        let compose = root + "/docker-compose.yml"
        let validated = try await run("/usr/bin/env", ["docker-compose", "-f", compose, "config", "-q"], environment: [:])
        #expect(validated.status == 0, "docker-compose config: \(validated.output)")
        let services = try await run("/usr/bin/env", ["docker-compose", "-f", compose, "config", "--services"], environment: [:])
        let names = Set(services.output.split(whereSeparator: \.isNewline).map(String.init))
        #expect(names == ["redis", "node1", "node2", "node3", "haproxy", "django"])
        let full = try await run("/usr/bin/env", ["docker-compose", "-f", compose, "config"], environment: [:]).output

        let described = try await run("/bin/bash", [root + "/scripts/cluster", "describe"], environment: [:])
        let topology = try #require(try json(described.output) as? [String: Any])
        let scriptNodes = try #require(topology["nodes"] as? [String])
        #expect(Set(scriptNodes) == names.filter { $0.hasPrefix("node") })
        #expect(topology["redis"] as? Int == 1)
        #expect(topology["balance"] as? String == "roundrobin")
        #expect(topology["health_check"] as? String == "/readyz")
        // Both run haproxy with the same configuration file.
        let haproxyConfig = try #require(topology["haproxy_config"] as? String)
        #expect(full.contains(haproxyConfig))
        let config = try String(contentsOfFile: root + "/" + haproxyConfig, encoding: .utf8)
        for node in scriptNodes { #expect(config.contains("server \(node) \(node):8000 check")) }
        // And every node in compose talks to the compose Redis, and so does the Django example.
        #expect(full.components(separatedBy: "CHANNELS_REDIS_URL: redis://redis:6379").count - 1 == scriptNodes.count + 1)
    }

    @Test func channelsCtlReportsTheRealStateAndTheClusterSurvivesAKilledNode() async throws {
        raiseOpenFileLimit(to: 4096)
        let cluster = try await ScriptedCluster.up()
        defer { Task { _ = try? await cluster.script("down") } }

        var clients: [ChatClient] = []
        for _ in 0..<30 { clients.append(try await ChatClient.connect(port: cluster.port, room: "ops")) }

        // groups, members: 30 members of chat_ops spread round robin over the three nodes.
        let groups = try #require(try json(try await cluster.ctl("groups", "--json").output) as? [[String: Any]])
        let ops = try #require(groups.first { $0["group"] as? String == "chat_ops" })
        #expect(ops["members"] as? Int == 30)
        #expect(ops["nodes"] as? [String] == ["node1", "node2", "node3"])
        let members = try #require(try json(try await cluster.ctl("members", "chat_ops", "--json").output) as? [[String: Any]])
        #expect(members.count == 30)
        #expect(Set(members.compactMap { $0["channel"] as? String }).count == 30)
        for node in ["node1", "node2", "node3"] { #expect(members.filter { $0["node"] as? String == node }.count == 10) }
        let table = try await cluster.ctl("groups")
        #expect(table.status == 0 && table.output.contains("chat_ops") && table.output.hasPrefix("GROUP"))

        // nodes: all alive; connections as reported by the heartbeat (every 10 s).
        let counted = await eventually(timeout: .seconds(15), every: .milliseconds(250)) {
            guard let nodes = try? self.json(try await cluster.ctl("nodes", "--json").output) as? [[String: Any]] else { return false }
            return nodes.count == 3 && nodes.allSatisfy { $0["status"] as? String == "alive" && $0["connections"] as? Int == 10 }
        }
        #expect(counted)

        // send: through the layer, to every member on every node.
        let sent = try await cluster.ctl("send", "chat_ops", #"{"type": "chat.message", "message": "from ops"}"#)
        #expect(sent.status == 0, "\(sent.output)")
        for client in clients { #expect(await client.waitForFrames(1)) }
        #expect(clients.allSatisfy { $0.messages == ["from ops"] })

        // SIGKILL node2: its clients lose their connection and reconnect through haproxy to the others.
        try cluster.kill(node: 2)
        var reconnected = 0
        for index in clients.indices {
            guard await clients[index].client.closed(timeout: .milliseconds(300)) != nil else { continue }
            var replacement: ChatClient?
            for _ in 0..<50 where replacement == nil {
                replacement = try? await ChatClient.connect(port: cluster.port, room: "ops")
                if replacement == nil { try await Task.sleep(for: .milliseconds(100)) }
            }
            clients[index] = try #require(replacement)
            reconnected += 1
        }
        #expect(reconnected == 10)

        // Within 30 s the dead node's members are gone from the registry and it is listed as stale.
        let cleaned = await eventually(timeout: .seconds(35), every: .milliseconds(500)) {
            guard let members = try? self.json(try await cluster.ctl("members", "chat_ops", "--json").output) as? [[String: Any]] else { return false }
            return members.count == 30 && !members.contains { $0["node"] as? String == "node2" }
        }
        #expect(cleaned)
        let nodes = try #require(try json(try await cluster.ctl("nodes", "--json").output) as? [[String: Any]])
        #expect(nodes.first { $0["node"] as? String == "node2" }?["status"] as? String == "stale")

        // Messages keep reaching everyone still connected.
        let before = clients.map(\.frames.count)
        clients[0].say("after the crash")
        for (client, count) in zip(clients, before) {
            #expect(await client.waitForFrames(count + 1))
            #expect(client.messages.last == "after the crash")
        }
        let down = try await cluster.script("down")
        #expect(down.status == 0)
    }

    @Test func channelsCtlFailsClearlyOnBadInput() async throws {
        let unreachable = try await run(
            ScriptedCluster.packageRoot.appendingPathComponent(".build/debug/channels-ctl").path,
            ["groups", "--redis", "redis://127.0.0.1:\(try freePort())"], environment: [:]
        )
        #expect(unreachable.status != 0)
        #expect(unreachable.output.contains("refused: is redis-server running there?"))

        let redis = try await RedisServer.start()
        let ctl = ScriptedCluster.packageRoot.appendingPathComponent(".build/debug/channels-ctl").path
        let badJSON = try await run(ctl, ["send", "chat_lobby", "{not json", "--redis", redis.url], environment: [:])
        #expect(badJSON.status != 0 && badJSON.output.contains("not valid JSON"))
        let noType = try await run(ctl, ["send", "chat_lobby", #"{"message": "x"}"#, "--redis", redis.url], environment: [:])
        #expect(noType.status != 0 && noType.output.contains(#"needs a string "type""#))
        let badName = try await run(ctl, ["send", "bad group", #"{"type": "x"}"#, "--redis", redis.url], environment: [:])
        #expect(badName.status != 0 && badName.output.contains("Group name must be a valid unicode string"))
        let badMembers = try await run(ctl, ["members", "no/slash", "--redis", redis.url], environment: [:])
        #expect(badMembers.status != 0 && badMembers.output.contains("Group name must be"))
        let flush = try await run(ctl, ["flush", "--redis", redis.url], environment: [:])
        #expect(flush.status != 0 && flush.output.contains("--yes"))
        let empty = try await run(ctl, ["groups", "--json", "--redis", redis.url], environment: [:])
        #expect(empty.status == 0 && empty.output.trimmingCharacters(in: .whitespacesAndNewlines) == "[]")
    }
}
