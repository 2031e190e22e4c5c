import ChannelsTestSupport
import ChannelsWebSocketClient
import Foundation
import Testing

/// The HTTP API (issue 16) against real nodes, Redis and WebSocket clients: the wire contract on two nodes,
/// disconnects across nodes, every refusal with its status and JSON reason, the rate limit, and the API on
/// the in-memory and core layers.
@Suite(.serialized) struct ServerAPITests {
    static let key = "test-api-key-0123456789abcdef"
    static let otherKey = "another-api-key-fedcba9876543210"

    static func objects(_ client: ChatClient) -> [[String: Any]] {
        client.frames.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    func startNodes(_ count: Int, redis: RedisServer?, arguments: [String] = []) async throws -> [NodeProcess] {
        let keys = try apiKeyFile([Self.key, Self.otherKey])
        var nodes: [NodeProcess] = []
        for index in 0..<count {
            nodes.append(
                try await NodeProcess.start(
                    redis: redis.map { [$0.url] } ?? [], nodeID: "api-\(index)-\(redis?.port ?? 0)", arguments: ["--api-key-file", keys] + arguments
                )
            )
        }
        return nodes
    }

    /// The issue's wire contract, on two nodes sharing Redis.
    @Test func wireContractOnTwoNodes() async throws {
        let redis = try await RedisServer.start()
        let nodes = try await startNodes(2, redis: redis)
        defer { for node in nodes { node.terminate() } }
        let clients = [try await ChatClient.connect(port: nodes[0].port, room: "x"), try await ChatClient.connect(port: nodes[1].port, room: "x")]

        let sent = try await httpRequest(port: nodes[0].port, "POST", "/api/groups/chat_x/send", key: Self.key, json: #"{"type": "chat.message", "message": "hi"}"#)
        #expect(sent.status == 202, "\(sent.body)")
        #expect(sent.json?["group"] as? String == "chat_x")
        let offset = try #require(sent.json?["offset"] as? Int, "chat_* keeps a history: the answer carries the offset")
        for client in clients {
            #expect(await client.waitForFrames(1))
            #expect(client.messages == ["hi"])
            #expect(Self.objects(client).first?["offset"] as? Int == offset)
            #expect(Self.objects(client).first?["epoch"] as? String == sent.json?["epoch"] as? String)
        }

        // No key, a wrong key: 401 with a JSON reason; nothing is sent.
        for key in [nil, "wrong-key-wrong-key-wrong-key"] {
            let refused = try await httpRequest(port: nodes[1].port, "POST", "/api/groups/chat_x/send", key: key, json: #"{"type": "chat.message", "message": "no"}"#)
            #expect(refused.status == 401)
            #expect(refused.json?["code"] as? String == "unauthorized")
            #expect((refused.json?["message"] as? String)?.contains("Authorization: Bearer") == true)
            #expect(refused.header("WWW-Authenticate")?.hasPrefix("Bearer") == true)
        }
        // Bad input: 400 with a JSON reason.
        let badGroup = try await httpRequest(port: nodes[0].port, "POST", "/api/groups/bad%20group!/send", key: Self.key, json: #"{"type": "x"}"#)
        #expect(badGroup.status == 400 && badGroup.json?["code"] as? String == "invalid_group")
        #expect((badGroup.json?["message"] as? String)?.contains("Group name must be a valid unicode string") == true)
        let notJSON = try await httpRequest(port: nodes[0].port, "POST", "/api/groups/chat_x/send", key: Self.key, json: "{not json")
        #expect(notJSON.status == 400 && notJSON.json?["code"] as? String == "invalid_json")
        let noType = try await httpRequest(port: nodes[0].port, "POST", "/api/groups/chat_x/send", key: Self.key, json: #"{"message": "hi"}"#)
        #expect(noType.status == 400 && noType.json?["code"] as? String == "missing_type")
        // 2 MiB: 413, and the node serves the next request on a new connection.
        let big = try await httpRequest(port: nodes[0].port, "POST", "/api/groups/chat_x/send", key: Self.key, body: Data(repeating: UInt8(ascii: "a"), count: 2 * 1024 * 1024))
        #expect(big.status == 413 && big.json?["code"] as? String == "body_too_large")

        // Listings: the group and its members on both nodes.
        let groups = try await httpRequest(port: nodes[1].port, "GET", "/api/groups?pattern=chat_*", key: Self.key)
        #expect(groups.status == 200 && groups.json?["scope"] as? String == "cluster")
        let listed = try #require(groups.json?["groups"] as? [[String: Any]])
        let chatX = try #require(listed.first { $0["name"] as? String == "chat_x" }, "\(groups.body)")
        #expect(chatX["members"] as? Int == 2)
        #expect(Set(chatX["nodes"] as? [String] ?? []) == Set(nodes.map(\.nodeID)))
        #expect(!listed.contains { ($0["name"] as? String ?? "").hasPrefix("channels.") }, "the nodes' own groups stay unlisted")
        let members = try await httpRequest(port: nodes[0].port, "GET", "/api/groups/chat_x/members", key: Self.key)
        let memberRows = try #require(members.json?["members"] as? [[String: Any]])
        #expect(memberRows.count == 2)
        #expect(Set(memberRows.compactMap { $0["node"] as? String }) == Set(nodes.map(\.nodeID)))
        #expect(memberRows.allSatisfy { ($0["channel"] as? String)?.hasPrefix("asgispecific.") == true })

        // History, nodes, the admin page.
        let history = try await httpRequest(port: nodes[1].port, "GET", "/api/groups/chat_x/history?limit=10", key: Self.key)
        let kept = try #require(history.json?["messages"] as? [[String: Any]])
        #expect(kept.count == 1 && kept.first?["offset"] as? Int == offset)
        #expect((kept.first?["message"] as? [String: Any])?["message"] as? String == "hi")
        let nodeList = try await httpRequest(port: nodes[0].port, "GET", "/api/nodes", key: Self.key)
        let nodeRows = try #require(nodeList.json?["nodes"] as? [[String: Any]])
        #expect(Set(nodeRows.compactMap { $0["id"] as? String }) == Set(nodes.map(\.nodeID)))
        #expect(nodeRows.allSatisfy { $0["reported"] as? Bool == true && $0["connections"] as? Int == 1 && $0["layer"] as? String == "pubsub" })
        #expect((nodeList.json?["redis"] as? [String: Any])?["redis_version"] != nil)
        let admin = try await httpRequest(port: nodes[1].port, "GET", "/admin")
        #expect(admin.status == 200 && admin.body.contains("swift-channels admin"))
        #expect(admin.header("Content-Security-Policy")?.contains("frame-ancestors 'none'") == true)

        #expect(try await nodes[0].get("/metrics").body.contains("channels_api_messages_published_total 1"))
        #expect(try await nodes[1].get("/metrics").body.contains("channels_api_unauthorized_total 2"))
    }

    /// curl asks `Expect: 100-continue` for large bodies: a body that fits is asked for and sent, one over the
    /// limit is refused before it is sent; keep-alive connections serve request after request.
    @Test func curlWithExpectContinueAndKeepAlive() async throws {
        let nodes = try await startNodes(1, redis: nil)
        let node = nodes[0]
        defer { node.terminate() }
        let client = try await ChatClient.connect(port: node.port, room: "curl")
        let directory = NSTemporaryDirectory() + "curl-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let padding = String(repeating: "x", count: 900 * 1024)
        try #"{"type": "chat.message", "message": "big", "padding": "\#(padding)"}"#.write(toFile: directory + "/fits.json", atomically: true, encoding: .utf8)
        try Data(repeating: UInt8(ascii: "a"), count: 2 * 1024 * 1024).write(to: URL(fileURLWithPath: directory + "/big.json"))
        func curl(_ arguments: [String]) async throws -> String {
            let result = try await run("/usr/bin/env", ["curl", "-s", "-H", "Authorization: Bearer \(Self.key)", "-H", "Expect: 100-continue", "-w", "\n%{http_code}"] + arguments, environment: [:])
            return result.output
        }
        let url = "http://127.0.0.1:\(node.port)/api/groups/chat_curl/send"
        let fits = try await curl(["--data-binary", "@\(directory)/fits.json", url])
        #expect(fits.hasSuffix("\n202"), "\(fits)")
        let big = try await curl(["--data-binary", "@\(directory)/big.json", url])
        #expect(big.hasSuffix("\n413") && big.contains("body_too_large"), "\(big.suffix(300))")
        // Two requests on one keep-alive connection.
        let twice = try await curl(["-d", #"{"type": "chat.message", "message": "one"}"#, url, "--next", "-s", "-H", "Authorization: Bearer \(Self.key)", "-w", "\n%{http_code}", "-d", #"{"type": "chat.message", "message": "two"}"#, url])
        #expect(twice.components(separatedBy: "\n202").count - 1 == 2, "\(twice)")
        #expect(await client.waitForFrames(3))
        #expect(client.messages == ["big", "one", "two"])
    }

    /// `POST /api/users/<user>/disconnect` closes that user's connections on every node with the code and
    /// reason; `POST /api/channels/<channel>/disconnect` closes one, wherever it is; the others stay.
    @Test func disconnectsReachEveryNode() async throws {
        let redis = try await RedisServer.start()
        let nodes = try await startNodes(2, redis: redis, arguments: ["--jwt-hs256-secret-file", try NodeSecurityTests.secretFile()])
        defer { for node in nodes { node.terminate() } }
        let alice = try await NodeSecurityTests.hs256(NodeSecurityTests.claims(sub: "alice"))
        let bob = try await NodeSecurityTests.hs256(NodeSecurityTests.claims(sub: "bob"))
        let aliceClients = [
            try await ChatClient.connect(port: nodes[0].port, room: "ops", query: "token=\(alice)"),
            try await ChatClient.connect(port: nodes[1].port, room: "ops", query: "token=\(alice)"),
        ]
        let bobClient = try await ChatClient.connect(port: nodes[1].port, room: "ops", query: "token=\(bob)")
        let carol = try await ChatClient.connect(port: nodes[0].port, room: "ops", query: "token=\(try await NodeSecurityTests.hs256(NodeSecurityTests.claims(sub: "carol")))")

        let answer = try await httpRequest(port: nodes[0].port, "POST", "/api/users/alice/disconnect", key: Self.key, json: #"{"code": 4000, "reason": "bye alice"}"#)
        #expect(answer.status == 202, "\(answer.body)")
        #expect(answer.json?["disconnected"] as? Int == 2)
        #expect(answer.json?["nodes_answered"] as? Int == 2 && answer.json?["nodes_expected"] as? Int == 2)
        for client in aliceClients {
            let close = await client.client.closed(timeout: .seconds(5))
            #expect(close?.code == 4000 && close?.reason == "bye alice")
        }
        #expect(bobClient.client.isOpen && carol.client.isOpen)

        // Bob's channel from the members listing (the chat consumer joins with presence: the user is there).
        let members = try await httpRequest(port: nodes[0].port, "GET", "/api/groups/chat_ops/members", key: Self.key)
        let rows = try #require(members.json?["members"] as? [[String: Any]])
        let bobChannel = try #require(rows.first { $0["user"] as? String == "bob" }?["channel"] as? String, "\(members.body)")
        let presence = try await httpRequest(port: nodes[1].port, "GET", "/api/groups/chat_ops/presence", key: Self.key)
        #expect(Set((presence.json?["members"] as? [[String: Any]] ?? []).compactMap { $0["user"] as? String }) == ["bob", "carol"])
        let closed = try await httpRequest(port: nodes[0].port, "POST", "/api/channels/\(bobChannel)/disconnect", key: Self.key, json: "")
        #expect(closed.status == 202 && closed.json?["disconnected"] as? Int == 1, "\(closed.body)")
        let bobClose = await bobClient.client.closed(timeout: .seconds(5))
        #expect(bobClose?.code == 1008 && bobClose?.reason == "disconnected by an operator")
        #expect(carol.client.isOpen)

        // Bad close codes and reasons are refused before anything is sent.
        for body in [#"{"code": 1005}"#, #"{"code": "4000"}"#, #"{"reason": "\#(String(repeating: "x", count: 124))"}"#] {
            let refused = try await httpRequest(port: nodes[1].port, "POST", "/api/users/carol/disconnect", key: Self.key, json: body)
            #expect(refused.status == 400 && ["invalid_code", "invalid_reason"].contains(refused.json?["code"] as? String ?? ""), "\(body): \(refused.body)")
        }
        #expect(carol.client.isOpen)
    }

    /// Every refusal is a JSON object with a code and a message, and loses nothing: a broadcast with one bad
    /// group sends to none, and the next good request goes through.
    @Test func badInputIsRefusedWithTheReason() async throws {
        let nodes = try await startNodes(1, redis: nil)
        let node = nodes[0]
        defer { node.terminate() }
        let client = try await ChatClient.connect(port: node.port, room: "a")
        let cases: [(String, String, String?, Int, String)] = [
            ("POST", "/api/groups/chat_a/send", #"{"type": 42}"#, 400, "missing_type"),
            ("POST", "/api/groups/chat_a/send", #"["type", "x"]"#, 400, "invalid_json"),
            ("POST", "/api/groups/chat_a/send", "", 400, "invalid_json"),
            ("POST", "/api/groups/channels.control/send", #"{"type": "x"}"#, 400, "reserved_group"),
            ("POST", "/api/channels/not%20a%20channel/send", #"{"type": "x"}"#, 400, "invalid_channel"),
            ("POST", "/api/broadcast", #"{"groups": ["chat_a", "bad group"], "message": {"type": "chat.message", "message": "lost?"}}"#, 400, "invalid_group"),
            ("POST", "/api/broadcast", #"{"groups": [], "message": {"type": "x"}}"#, 400, "invalid_groups"),
            ("POST", "/api/broadcast", #"{"groups": ["chat_a"], "message": {"message": "no type"}}"#, 400, "missing_type"),
            ("GET", "/api/groups?pattern=chat_[a]", nil, 400, "invalid_pattern"),
            ("GET", "/api/groups/chat_a/history?since=-1", nil, 400, "invalid_since"),
            ("GET", "/api/groups/chat_a/history?limit=5000", nil, 400, "invalid_limit"),
            ("POST", "/api/users/%C3%28/disconnect", nil, 400, "invalid_path"),
            ("DELETE", "/api/groups", nil, 405, "method_not_allowed"),
            ("GET", "/api/groups/chat_a/send", nil, 405, "method_not_allowed"),
            ("GET", "/api/nothing/here", nil, 404, "not_found"),
        ]
        for (method, path, body, status, code) in cases {
            let answer = if let body {
                try await httpRequest(port: node.port, method, path, key: Self.key, json: body)
            } else {
                try await httpRequest(port: node.port, method, path, key: Self.key)
            }
            #expect(answer.status == status, "\(method) \(path): \(answer.body)")
            #expect(answer.json?["code"] as? String == code, "\(method) \(path): \(answer.body)")
            #expect((answer.json?["message"] as? String)?.isEmpty == false)
        }
        let sent = try await httpRequest(port: node.port, "POST", "/api/broadcast", key: Self.key, json: #"{"groups": ["chat_a", "chat_b"], "message": {"type": "chat.message", "message": "after"}}"#)
        #expect(sent.status == 202)
        #expect(await client.waitForFrames(1))
        #expect(client.messages == ["after"], "the refused broadcast sent nothing")

        // A node without keys: the API and the admin page are off (404, and they say how to turn them on).
        let off = try await NodeProcess.start()
        defer { off.terminate() }
        let answer = try await httpRequest(port: off.port, "POST", "/api/groups/chat_a/send", key: Self.key, json: #"{"type": "x"}"#)
        #expect(answer.status == 404 && answer.json?["code"] as? String == "api_disabled")
        #expect((answer.json?["message"] as? String)?.contains("--api-key-file") == true)
        #expect(try await off.get("/admin").status == 404)
    }

    /// Each key has its own token bucket: past the burst the key gets 429 with Retry-After, the other key does not.
    @Test func eachKeyIsRateLimited() async throws {
        let nodes = try await startNodes(1, redis: nil, arguments: ["--api-rate-limit", "0.5", "--api-burst", "3"])
        let node = nodes[0]
        defer { node.terminate() }
        var statuses: [Int] = []
        for _ in 0..<4 { statuses.append(try await httpRequest(port: node.port, "GET", "/api/groups", key: Self.key).status) }
        #expect(statuses == [200, 200, 200, 429])
        let limited = try await httpRequest(port: node.port, "GET", "/api/nodes", key: Self.key)
        #expect(limited.status == 429 && limited.json?["code"] as? String == "rate_limited" && limited.header("Retry-After") == "1")
        #expect(try await httpRequest(port: node.port, "GET", "/api/groups", key: Self.otherKey).status == 200)
        #expect(try await node.get("/metrics").body.contains("channels_api_rate_limited_total 2"))
    }

    /// The in-memory layer: listings are the node's own (scope "node", and they say so), sends and history work.
    @Test func theInMemoryLayerListsItsOwnState() async throws {
        let node = try await NodeProcess.start(environment: ["CHANNELS_API_KEYS": "\(Self.key),\(Self.otherKey)"])
        defer { node.terminate() }
        let client = try await ChatClient.connect(port: node.port, room: "solo")
        let sent = try await httpRequest(port: node.port, "POST", "/api/groups/chat_solo/send", key: Self.otherKey, json: #"{"type": "chat.message", "message": "local"}"#)
        #expect(sent.status == 202 && sent.json?["offset"] as? Int == 1)
        #expect(await client.waitForFrames(1))
        #expect(client.messages == ["local"])
        let groups = try await httpRequest(port: node.port, "GET", "/api/groups", key: Self.key)
        #expect(groups.json?["scope"] as? String == "node" && (groups.json?["note"] as? String)?.contains("in-memory") == true)
        let rows = try #require(groups.json?["groups"] as? [[String: Any]])
        #expect(rows.map { $0["name"] as? String } == ["chat_solo"], "the probe's and control groups stay out: \(groups.body)")
        #expect(rows.first?["members"] as? Int == 1 && rows.first?["nodes"] as? [String] == [node.nodeID])
        let members = try await httpRequest(port: node.port, "GET", "/api/groups/chat_solo/members", key: Self.key)
        #expect((members.json?["members"] as? [[String: Any]])?.first?["node"] as? String == node.nodeID)
        let history = try await httpRequest(port: node.port, "GET", "/api/groups/chat_solo/history?since=0", key: Self.key)
        #expect((history.json?["messages"] as? [[String: Any]])?.count == 1)
        let nodes = try await httpRequest(port: node.port, "GET", "/api/nodes", key: Self.key)
        let rowsOfNodes = try #require(nodes.json?["nodes"] as? [[String: Any]])
        #expect(rowsOfNodes.count == 1 && rowsOfNodes.first?["layer"] as? String == "memory" && rowsOfNodes.first?["connections"] as? Int == 1)
        // Rates: what went through shows in the node's report within a couple of samples.
        for index in 0..<5 {
            _ = try await httpRequest(port: node.port, "POST", "/api/groups/chat_solo/send", key: Self.key, json: #"{"type": "chat.message", "message": "\#(index)"}"#)
        }
        #expect(await client.waitForFrames(6))
        let rated = await eventually(timeout: .seconds(5), every: .milliseconds(250)) {
            guard let row = (try? await httpRequest(port: node.port, "GET", "/api/nodes", key: Self.otherKey))?.json?["nodes"] as? [[String: Any]],
                let rates = row.first?["group_rates"] as? [String: Any]
            else { return false }
            return (rates["chat_solo"] as? Double ?? 0) > 0 && (row.first?["messages_out_per_second"] as? Double ?? 0) > 0
        }
        #expect(rated)
        let channel = try #require((members.json?["members"] as? [[String: Any]])?.first?["channel"] as? String)
        let direct = try await httpRequest(port: node.port, "POST", "/api/channels/\(channel)/send", key: Self.key, json: #"{"type": "chat.message", "message": "just you"}"#)
        #expect(direct.status == 202)
        #expect(await client.waitForFrames(7))
        #expect(client.messages == ["local", "0", "1", "2", "3", "4", "just you"])
        let gone = try await httpRequest(port: node.port, "POST", "/api/channels/\(channel)/disconnect", key: Self.key, json: #"{"code": 1012, "reason": "restarting"}"#)
        #expect(gone.json?["disconnected"] as? Int == 1)
        #expect(await client.client.closed(timeout: .seconds(5))?.code == 1012)
    }

    /// The core layer (Django's default): sends, listings and disconnects; history says it keeps none.
    @Test func theCoreLayer() async throws {
        let redis = try await RedisServer.start()
        let nodes = try await startNodes(2, redis: redis, arguments: ["--layer", "core", "--history", "none"])
        defer { for node in nodes { node.terminate() } }
        let clients = [try await ChatClient.connect(port: nodes[0].port, room: "core"), try await ChatClient.connect(port: nodes[1].port, room: "core")]
        let sent = try await httpRequest(port: nodes[1].port, "POST", "/api/groups/chat_core/send", key: Self.key, json: #"{"type": "chat.message", "message": "core"}"#)
        #expect(sent.status == 202 && sent.json?["offset"] == nil)
        for client in clients {
            #expect(await client.waitForFrames(1))
            #expect(client.messages == ["core"])
        }
        let groups = try await httpRequest(port: nodes[0].port, "GET", "/api/groups?pattern=chat_c*", key: Self.key)
        #expect((groups.json?["groups"] as? [[String: Any]])?.first?["members"] as? Int == 2)
        let history = try await httpRequest(port: nodes[0].port, "GET", "/api/groups/chat_core/history", key: Self.key)
        #expect(history.status == 200 && history.json?["keeps_history"] as? Bool == false)
        let members = try await httpRequest(port: nodes[0].port, "GET", "/api/groups/chat_core/members", key: Self.key)
        let channels = (members.json?["members"] as? [[String: Any]] ?? []).compactMap { $0["channel"] as? String }
        #expect(channels.count == 2 && channels.allSatisfy { $0.contains("!") })
        let closed = try await httpRequest(port: nodes[0].port, "POST", "/api/channels/\(channels[0])/disconnect", key: Self.key, json: #"{"code": 4001}"#)
        #expect(closed.json?["disconnected"] as? Int == 1, "\(closed.body)")
        let codes = await [clients[0].client.closed(timeout: .seconds(5))?.code, clients[1].client.closed(timeout: .seconds(1))?.code]
        #expect(codes.compactMap { $0 } == [4001])
    }

    /// A key file that cannot be read, holds no key, or holds a short one stops the node with the reason.
    @Test func badKeySettingsStopTheNode() async throws {
        let empty = try apiKeyFile([])
        let short = try apiKeyFile(["short"])
        let cases: [([String], [String: String], String)] = [
            (["--api-key-file", "/nonexistent/keys"], [:], "cannot read the API key file"),
            (["--api-key-file", empty], [:], "holds no key"),
            (["--api-key-file", short], [:], "too short to be secret"),
            ([], ["CHANNELS_API_KEYS": "tiny"], "too short to be secret"),
            (["--api-key-file", try apiKeyFile([Self.key]), "--api-max-body-size", "10"], [:], "--api-max-body-size must be at least 1024"),
        ]
        for (arguments, environment, reason) in cases {
            let node = try await NodeProcess.start(arguments: arguments, environment: environment, waitForReady: false)
            #expect(await node.exitStatus(timeout: .seconds(10)) != 0)
            #expect(node.log.contains(reason), "\(arguments): \(node.log)")
        }
    }

    /// `channels-ctl` takes its common options before the subcommand too; `history` and `disconnect` work
    /// through the layer and refuse bad input with one line.
    @Test func channelsCtlHistoryAndDisconnect() async throws {
        let redis = try await RedisServer.start()
        let node = try await NodeProcess.start(redis: [redis.url], arguments: ["--jwt-hs256-secret-file", try NodeSecurityTests.secretFile()])
        defer { node.terminate() }
        let token = try await NodeSecurityTests.hs256(NodeSecurityTests.claims(sub: "dave"))
        let client = try await ChatClient.connect(port: node.port, room: "cli", query: "token=\(token)")
        let ctl = try builtProduct("channels-ctl")
        for text in ["one", "two", "three"] {
            let sent = try await run(ctl, ["--redis", redis.url, "send", "chat_cli", #"{"type": "chat.message", "message": "\#(text)"}"#], environment: [:])
            #expect(sent.status == 0, "\(sent.output)")
        }
        #expect(await client.waitForFrames(3))
        let history = try await run(ctl, ["--json", "--redis", redis.url, "history", "chat_cli", "--limit", "2"], environment: [:])
        let read = try #require(try JSONSerialization.jsonObject(with: Data(history.output.utf8)) as? [String: Any], "\(history.output)")
        let messages = try #require(read["messages"] as? [[String: Any]])
        #expect(messages.compactMap { $0["offset"] as? Int } == [2, 3])
        #expect(messages.compactMap { ($0["message"] as? [String: Any])?["message"] as? String } == ["two", "three"])
        let since = try await run(ctl, ["history", "chat_cli", "--since", "2", "--redis", redis.url], environment: [:])
        #expect(since.status == 0 && since.output.contains("three") && !since.output.contains("\"two\""), "\(since.output)")

        let groups = try await run(ctl, ["--redis", redis.url, "--json", "groups"], environment: [:])
        #expect(groups.output.contains("chat_cli"), "\(groups.output)")

        let disconnected = try await run(ctl, ["--redis", redis.url, "disconnect", "--user", "dave", "--code", "4002", "--reason", "from ctl"], environment: [:])
        #expect(disconnected.status == 0 && disconnected.output.contains("closed 1 connection"), "\(disconnected.output)")
        let close = await client.client.closed(timeout: .seconds(5))
        #expect(close?.code == 4002 && close?.reason == "from ctl")

        let failures: [([String], String)] = [
            (["disconnect", "--redis", redis.url], "give either --channel CHANNEL or --user USER"),
            (["disconnect", "--user", "x", "--code", "1005", "--redis", redis.url], "--code must be"),
            (["history", "lobby", "--redis", redis.url], "keeps no history"),
            (["history", "bad group", "--redis", redis.url], "Group name must be"),
            (["--layer", "core", "history", "chat_cli", "--redis", redis.url], "the core layer keeps no history"),
        ]
        for (arguments, reason) in failures {
            let result = try await run(ctl, arguments, environment: [:])
            #expect(result.status != 0 && result.output.contains(reason), "\(arguments): \(result.output)")
        }
    }
}
