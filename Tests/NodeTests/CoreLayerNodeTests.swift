import ChannelsTestSupport
import ChannelsWebSocketClient
import Foundation
import HiredisClient
import Testing

/// `channels-node --layer core` with Django's default layer, channels_redis' RedisChannelLayer from PyPI:
/// the issue's wire contract for one host, two hosts and encryption, and a room shared with a Django
/// (uvicorn) process serving the same chat consumer.
@Suite(.serialized) struct CoreLayerNodeTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let interop = root.appendingPathComponent("Tests/ChannelLayersRedisTests/Interop/channels_interop.py").path

    /// channels_redis' core layer in a Python process: `command` with `--core` and the keys.
    func django(_ arguments: [String], keys: [String]) throws -> PythonProcess {
        let options = ["--core"] + (keys.isEmpty ? [] : ["--keys", keys.joined(separator: ",")])
        return try PythonProcess(python: try PythonProcess.interpreter(packageRoot: Self.root), script: Self.interop, arguments: options + arguments)
    }

    func startNodes(_ count: Int, redis: [RedisServer], keys: [String], arguments: [String] = []) async throws -> [NodeProcess] {
        var environment: [String: String] = [:]
        if !keys.isEmpty { environment["CHANNELS_SYMMETRIC_ENCRYPTION_KEYS"] = keys.joined(separator: ",") }
        var nodes: [NodeProcess] = []
        for index in 0..<count {
            nodes.append(
                try await NodeProcess.start(
                    redis: redis.map(\.url), nodeID: "core-\(index)-\(redis[0].port)",
                    arguments: ["--layer", "core", "--history", "none"] + arguments, environment: environment
                )
            )
        }
        return nodes
    }

    /// The wire contract: Django's group_send reaches the chat clients of two nodes, and a client's chat
    /// message reaches a Django consumer in the group (and the other clients).
    @Test(arguments: [(1, [String]()), (2, []), (1, ["django-secret"]), (2, ["new-secret", "django-secret"])])
    func djangoAndSwiftNodesShareChatRooms(hostCount: Int, keys: [String]) async throws {
        var servers: [RedisServer] = []
        for _ in 0..<hostCount { servers.append(try await RedisServer.start()) }
        let hosts = servers.map(\.url).joined(separator: ",")
        let nodes = try await startNodes(2, redis: servers, keys: keys)
        defer { for node in nodes { node.terminate() } }
        // Rooms whose groups land on each host when there are two.
        for room in ["lobby", "a", "b", "c"] {
            let clients = [try await ChatClient.connect(port: nodes[0].port, room: room), try await ChatClient.connect(port: nodes[1].port, room: room)]
            let consumer = try django(["receive-group", hosts, "chat_\(room)", "1"], keys: keys)
            _ = try await consumer.nextLine()  // READY
            // With two keys the sender has only the old one (a Django process not rotated yet): nodes decrypt with any.
            let sender = try django(["group-send", hosts, "chat_\(room)", #"{"type": "chat.message", "message": "from django \#(room)"}"#], keys: keys.suffix(1))
            #expect(try await sender.nextLine() == "SENT")
            for client in clients {
                #expect(await client.waitForFrames(1))
                #expect(client.frames.first == #"{"message":"from django \#(room)"}"#)
            }
            #expect(try await consumer.nextLine() == #"{"type": "chat.message", "message": "from django \#(room)"}"#)

            let consumer2 = try django(["receive-group", hosts, "chat_\(room)", "1"], keys: keys)
            _ = try await consumer2.nextLine()
            clients[0].say("from swift \(room)")
            // The chat consumer stamps `sent_at` (for latency figures); Django's consumer gets the message as sent.
            let line = try JSONSerialization.jsonObject(with: Data(try await consumer2.nextLine().utf8)) as? [String: Any]
            #expect(line?["type"] as? String == "chat.message" && line?["message"] as? String == "from swift \(room)")
            for client in clients {
                #expect(await client.waitForFrames(2))
                #expect(client.messages == ["from django \(room)", "from swift \(room)"])
            }
            for client in clients { await client.client.close() }
        }
        for node in nodes {
            let metrics = try await node.get("/metrics").body
            #expect(metrics.contains("channels_undecodable_total 0"))
            #expect(metrics.contains("channels_dropped_total 0"))
        }
    }

    /// One room served by a Django (uvicorn) process running the seed's consumer and two Swift nodes.
    @Test func aRoomSpreadOverDjangoAndTwoSwiftNodes() async throws {
        let redis = try await RedisServer.start()
        let nodes = try await startNodes(2, redis: [redis], keys: ["shared-key"])
        defer { for node in nodes { node.terminate() } }
        let port = try freePort()
        let uvicorn = try PythonProcess(
            python: try PythonProcess.interpreter(packageRoot: Self.root), script: "-m",
            arguments: ["uvicorn", "--app-dir", Self.root.appendingPathComponent("bench/django").path, "benchsite:application",
                        "--host", "127.0.0.1", "--port", String(port), "--log-level", "warning"],
            environment: ["CHANNELS_REDIS_URL": redis.url, "CHANNELS_LAYER": "core", "CHANNELS_SYMMETRIC_ENCRYPTION_KEYS": "shared-key"]
        )
        defer { uvicorn.terminate() }
        var djangoClient: ChatClient?
        for _ in 0..<100 where djangoClient == nil {
            djangoClient = try? await ChatClient.connect(port: port, room: "mixed")
            if djangoClient == nil { try await Task.sleep(for: .milliseconds(100)) }
        }
        let onDjango = try #require(djangoClient, "uvicorn did not serve the chat consumer: \(uvicorn.standardError)")
        let onSwift = [try await ChatClient.connect(port: nodes[0].port, room: "mixed"), try await ChatClient.connect(port: nodes[1].port, room: "mixed")]
        let everyone = [onDjango] + onSwift
        onDjango.say("from django")
        onSwift[0].say("from node 0")
        onSwift[1].say("from node 1")
        for client in everyone {
            #expect(await client.waitForFrames(3))
            #expect(client.messages.sorted() == ["from django", "from node 0", "from node 1"])
        }
        // Members are Django's own sorted set: one channel each.
        let inspector = try await RedisConnection.connect(configuration: redis.configuration())
        #expect(try await inspector.send("ZCARD", "asgi:group:chat_mixed").integer == 3)
    }

    /// `channels-ctl --layer core`: sends reach the nodes' clients (encrypted as they expect), and
    /// `members` lists Django's own members beside the nodes'.
    @Test func channelsCtlSpeaksTheCoreLayer() async throws {
        let redis = try await RedisServer.start()
        let nodes = try await startNodes(1, redis: [redis], keys: ["ctl-key"])
        defer { for node in nodes { node.terminate() } }
        let client = try await ChatClient.connect(port: nodes[0].port, room: "ops")
        let consumer = try django(["receive-group", redis.url, "chat_ops", "1"], keys: ["ctl-key"])
        let djangoChannel = try await consumer.nextLine().replacingOccurrences(of: "READY ", with: "")
        let ctl = try builtProduct("channels-ctl")
        let environment = ["CHANNELS_LAYER": "core", "CHANNELS_SYMMETRIC_ENCRYPTION_KEYS": "ctl-key"]
        let sent = try await run(ctl, ["send", "chat_ops", #"{"type": "chat.message", "message": "from ctl"}"#, "--redis", redis.url], environment: environment)
        #expect(sent.status == 0, "\(sent.output)")
        #expect(await client.waitForFrames(1))
        #expect(client.messages == ["from ctl"])
        #expect(try await consumer.nextLine() == #"{"type": "chat.message", "message": "from ctl"}"#)

        let members = try await run(ctl, ["members", "chat_ops", "--redis", redis.url, "--json"], environment: environment)
        let listed = try #require(try JSONSerialization.jsonObject(with: Data(members.output.utf8)) as? [[String: Any]])
        #expect(Set(listed.compactMap { $0["node"] as? String }) == [nodes[0].nodeID, "django"])
        #expect(listed.contains { $0["channel"] as? String == djangoChannel })

        let wrongKey = try await run(ctl, ["send", "chat_ops", #"{"type": "chat.message", "message": "unreadable"}"#, "--redis", redis.url], environment: ["CHANNELS_LAYER": "core"])
        #expect(wrongKey.status == 0)
        #expect(await eventually { (try? await nodes[0].get("/metrics").body.contains("channels_undecodable_total 1")) == true })
        let badLayer = try await run(ctl, ["send", "chat_ops", #"{"type": "x"}"#, "--redis", redis.url, "--layer", "coer"], environment: [:])
        #expect(badLayer.status != 0 && badLayer.output.contains("is not pubsub"))
    }

    /// SIGTERM drains a core node: its clients get 1001 and its members leave Django's sorted sets.
    @Test func aDrainingNodeLeavesDjangosGroups() async throws {
        let redis = try await RedisServer.start()
        let nodes = try await startNodes(1, redis: [redis], keys: [])
        let inspector = try await RedisConnection.connect(configuration: redis.configuration())
        var clients: [ChatClient] = []
        for _ in 0..<5 { clients.append(try await ChatClient.connect(port: nodes[0].port, room: "drain")) }
        #expect(try await inspector.send("ZCARD", "asgi:group:chat_drain").integer == 5)
        nodes[0].terminate()
        for client in clients { #expect(await client.client.closed(timeout: .seconds(15))?.code == 1001) }
        #expect(await nodes[0].exitStatus() == 0)
        #expect(try await inspector.send("ZCARD", "asgi:group:chat_drain").integer == 0)
        #expect(try await inspector.send("EXISTS", .string("asgi:registry:node:\(nodes[0].nodeID)")).integer == 0)
    }

    /// A message in another key is counted, nothing is closed, and the node goes on.
    @Test func aMessageNoKeyDecryptsIsCountedAndTheNodeGoesOn() async throws {
        let redis = try await RedisServer.start()
        let nodes = try await startNodes(1, redis: [redis], keys: ["node-key"])
        defer { for node in nodes { node.terminate() } }
        let client = try await ChatClient.connect(port: nodes[0].port, room: "keys")
        for (keys, text) in [(["other-key"], "lost"), (["node-key"], "kept")] {
            let sender = try django(["group-send", redis.url, "chat_keys", #"{"type": "chat.message", "message": "\#(text)"}"#], keys: keys)
            #expect(try await sender.nextLine() == "SENT")
        }
        #expect(await client.waitForFrames(1))
        #expect(client.messages == ["kept"])
        #expect(try await nodes[0].get("/metrics").body.contains("channels_undecodable_total 1"))
        #expect(nodes[0].log.contains("no encryption key of this node decrypts"))
    }

    @Test func badLayerSettingsStopTheNodeWithTheReason() async throws {
        let redis = try await RedisServer.start()
        let keyFile = FileManager.default.temporaryDirectory.appendingPathComponent("empty-keys-\(redis.port)").path
        _ = FileManager.default.createFile(atPath: keyFile, contents: Data("# no key here\n\n".utf8))
        let goodKeyFile = keyFile + "-good"
        _ = FileManager.default.createFile(atPath: goodKeyFile, contents: Data("a-key\n".utf8))
        let cases: [([String], String)] = [
            (["--layer", "nonsense"], "is not pubsub"),
            (["--layer", "core", "--encryption-key-file", keyFile], "holds no key"),
            (["--layer", "core", "--encryption-key-file", "/nonexistent/keys"], "cannot read the encryption key file"),
            (["--layer", "core", "--channel-capacity", "specific.*"], "PATTERN=CAPACITY"),
            (["--layer", "core", "--history", "chat_*"], "needs the pubsub layer"),
            (["--encryption-key-file", goodKeyFile, "--history", "chat_*"], "cannot keep a history"),
        ]
        for (arguments, reason) in cases {
            let node = try await NodeProcess.start(redis: [redis.url], arguments: arguments, waitForReady: false)
            #expect(await node.exitStatus(timeout: .seconds(10)) != 0)
            #expect(node.log.contains(reason), "\(arguments): \(node.log)")
        }
        let withoutRedis = try await NodeProcess.start(arguments: ["--layer", "core"], waitForReady: false)
        #expect(await withoutRedis.exitStatus(timeout: .seconds(10)) != 0)
        #expect(withoutRedis.log.contains("needs Redis"))
    }

    /// A node that stops reading (SIGSTOP here) fills its queue (`--channel-capacity 'specific.*=5'`); the
    /// node that sends the room's messages records those it could not write, and the stopped node, once it
    /// reads again, tells its clients in that room (`messages_lost`), not those in other rooms, and counts them.
    @Test func aNodeTellsItsClientsOfTheGroupMessagesItsFullQueueMissed() async throws {
        let redis = try await RedisServer.start()
        let nodes = try await startNodes(2, redis: [redis], keys: [], arguments: ["--channel-capacity", "specific.*=5"])
        defer { for node in nodes { node.terminate() } }
        let stalled = try await ChatClient.connect(port: nodes[0].port, room: "busy")
        let quiet = try await ChatClient.connect(port: nodes[0].port, room: "quiet")
        let sender = try await ChatClient.connect(port: nodes[1].port, room: "busy")
        let stopped = nodes[0].processIdentifier
        _ = Glibc.kill(stopped, SIGSTOP)
        var resumed = false
        defer { if !resumed { _ = Glibc.kill(stopped, SIGCONT) } }
        // One at a time: the sender's own queue (capacity 5 too) never fills.
        for number in 0..<8 {
            sender.say("m\(number)")
            #expect(await sender.waitForFrames(number + 1))
        }
        _ = Glibc.kill(stopped, SIGCONT)
        resumed = true

        // Its blocked BZPOPMIN may have taken one more before it stopped: 5 or 6 delivered, the rest missed.
        #expect(await eventually { stalled.frames.contains { $0.contains(#""error":"messages_lost""#) } })
        #expect(await eventually { stalled.messages.count >= 5 })
        let delivered = stalled.messages
        let missed = 8 - delivered.count
        #expect(delivered == (0..<delivered.count).map { "m\($0)" })
        #expect((2...3).contains(missed), "\(stalled.frames)")
        #expect(stalled.frames.contains { $0.contains("\(missed) messages for group chat_busy") }, "\(stalled.frames)")
        try await Task.sleep(for: .milliseconds(300))
        #expect(quiet.frames.isEmpty)
        #expect(try await nodes[1].get("/metrics").body.contains("channels_dropped_total \(missed)"))
        #expect(await eventually { (try? await nodes[0].get("/metrics").body.contains("channels_missed_total \(missed)")) == true })
    }

    /// Node queues hold 10,000 for a node's group sends, not Django's 100 per channel: a process that stopped
    /// reading still gets them past 100 entries.
    @Test func nodeQueuesHoldTenThousandByDefault() async throws {
        let redis = try await RedisServer.start()
        let inspector = try await RedisConnection.connect(configuration: redis.configuration())
        let now = Date().timeIntervalSince1970
        _ = try await inspector.send(
            RedisCommand("ZADD", arguments: ["asgispecific.stalled!"] + (0..<150).flatMap { [.string(String(now)), .string("entry \($0)")] as [RedisArgument] })
        )
        _ = try await inspector.send("ZADD", "asgi:group:chat_busy", .string(String(now)), "specific.stalled!abc")
        let nodes = try await startNodes(1, redis: [redis], keys: [])
        defer { for node in nodes { node.terminate() } }
        let client = try await ChatClient.connect(port: nodes[0].port, room: "busy")
        for number in 0..<3 { client.say("m\(number)") }
        #expect(await client.waitForFrames(3))
        #expect(try await inspector.send("ZCARD", "asgispecific.stalled!").integer == 153)
        #expect(try await inspector.send("EXISTS", "asgispecific.stalled!$missed").integer == 0)
        #expect(try await nodes[0].get("/metrics").body.contains("channels_dropped_total 0"))
    }

    /// A wrong password stops a core node at start with the reason, as on the pub/sub layer.
    @Test func aWrongPasswordStopsTheNode() async throws {
        let redis = try await RedisServer.start(password: "right")
        let url = redis.url.replacingOccurrences(of: ":right@", with: ":wrong@")
        let node = try await NodeProcess.start(redis: [url], arguments: ["--layer", "core"], waitForReady: false)
        #expect(await node.exitStatus(timeout: .seconds(15)) == 1)
        #expect(node.log.contains("refused the credentials"))
    }
}
