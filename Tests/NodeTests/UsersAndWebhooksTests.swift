import ChannelsTestSupport
import ChannelsWebSocketClient
import Foundation
import Synchronization
import Testing

/// Users and events (issue 24): a user's group on every node, the per-user limit counted in Redis, leave
/// events and webhooks for a node that dies, and webhooks that survive a failing receiver; real Redis, nodes
/// and an HTTP receiver (`Wire/webhook_receiver.py`).
@Suite struct UsersAndWebhooksTests {
    static let apiKey = "users-api-key-0123456789abcdef"

    /// The webhook receiver: every POST it got, as it printed them.
    final class Receiver: Sendable {
        struct Post: Sendable {
            var status: Int
            var valid: Bool
            var events: [[String: String]]
        }

        let port: Int
        let secretFile: String
        private let process: PythonProcess
        private let received = Mutex<[Post]>([])

        init(statuses: [Int] = []) async throws {
            let secret = "webhook-secret-\(UUID().uuidString)"
            secretFile = NSTemporaryDirectory() + "channels-webhook-\(UUID().uuidString)"
            try (secret + "\n").write(toFile: secretFile, atomically: true, encoding: .utf8)
            let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Wire/webhook_receiver.py").path
            process = try PythonProcess(python: "/usr/bin/python3", script: script, arguments: [secret, statuses.map(String.init).joined(separator: ",")])
            let first = try await process.nextLine(timeout: .seconds(10))
            port = Int(first.split(separator: " ").last ?? "") ?? 0
            let process = self.process
            Task { [weak self] in
                while let line = try? await process.nextLine(timeout: .seconds(3600)) {
                    self?.record(line)
                }
            }
        }

        private func record(_ line: String) {
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { return }
            let body = object["body"] as? [String: Any]
            let events = (body?["events"] as? [[String: Any]] ?? []).map { event in
                event.compactMapValues { value -> String? in value is NSNull ? "null" : "\(value)" }
            }
            received.withLock {
                $0.append(Post(status: object["status"] as? Int ?? 0, valid: object["valid"] as? Bool ?? false, events: events))
            }
        }

        var posts: [Post] { received.withLock { $0 } }
        /// The events of the POSTs answered 2xx, in order.
        var delivered: [[String: String]] { posts.filter { (200..<300).contains($0.status) }.flatMap(\.events) }

        var arguments: [String] { ["--webhook-url", "http://127.0.0.1:\(port)/hooks", "--webhook-secret-file", secretFile] }

        /// SIGKILL: the receiver keeps nothing to finish, and a child spawned from a pool thread inherits its
        /// blocked signals, SIGTERM among them (receivers outlived the test run).
        func stop() { process.kill() }
    }

    static func token(_ user: String) async throws -> String {
        try await NodeSecurityTests.hs256(NodeSecurityTests.claims(sub: user))
    }

    static func objects(_ client: ChatClient) -> [[String: Any]] {
        client.frames.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    @Test func aUsersConnectionsOnEveryNodeGetWhatIsSentToTheUserAndNoOneElse() async throws {
        let redis = try await RedisServer.start()
        let secret = try NodeSecurityTests.secretFile()
        let keys = try apiKeyFile([Self.apiKey])
        let arguments = ["--jwt-hs256-secret-file", secret, "--api-key-file", keys]
        let first = try await NodeProcess.start(redis: [redis.url], arguments: arguments)
        let second = try await NodeProcess.start(redis: [redis.url], arguments: arguments)
        defer { first.terminate(); second.terminate() }
        let alice = try await Self.token("alice")
        let tabs = [
            try await ChatClient.connect(port: first.port, room: "a", query: "token=\(alice)"),
            try await ChatClient.connect(port: first.port, room: "b", query: "token=\(alice)"),
            try await ChatClient.connect(port: second.port, room: "c", query: "token=\(alice)"),
        ]
        let bob = try await ChatClient.connect(port: second.port, room: "a", query: "token=\(try await Self.token("bob"))")

        let answer = try await httpRequest(
            port: second.port, "POST", "/api/users/alice/send", key: Self.apiKey, json: #"{"type": "chat.message", "message": "for alice"}"#
        )
        #expect(answer.status == 202 && answer.body.contains(#""user":"alice""#), "\(answer.status) \(answer.body)")
        for tab in tabs { #expect(await eventually { tab.messages == ["for alice"] }, "\(tab.frames)") }

        // channels-ctl sends to the same group, like Django's group_send("user.alice", ...).
        let ctl = try await run(
            try builtProduct("channels-ctl"), ["send", "user.alice", #"{"type": "chat.message", "message": "from ctl"}"#, "--redis", redis.url], environment: [:]
        )
        #expect(ctl.status == 0, "\(ctl.output)")
        for tab in tabs { #expect(await eventually { tab.messages == ["for alice", "from ctl"] }, "\(tab.frames)") }
        // And Django's own group_send (the real channels_redis) to the same group.
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let django = try PythonProcess(
            python: try PythonProcess.interpreter(packageRoot: root),
            script: root.appendingPathComponent("Tests/ChannelLayersRedisTests/Interop/channels_interop.py").path,
            arguments: ["group-send", redis.url, "user.alice", #"{"type": "chat.message", "message": "from django"}"#]
        )
        #expect(try await django.nextLine() == "SENT")
        for tab in tabs { #expect(await eventually { tab.messages == ["for alice", "from ctl", "from django"] }, "\(tab.frames)") }
        try await Task.sleep(for: .milliseconds(300))
        #expect(bob.messages.isEmpty, "\(bob.frames)")

        // A user whose group name Channels would refuse has no group: the API says so.
        let refused = try await httpRequest(port: first.port, "POST", "/api/users/a%20b/send", key: Self.apiKey, json: #"{"type": "chat.message"}"#)
        #expect(refused.status == 400 && refused.body.contains("invalid_user"), "\(refused.body)")
        let untyped = try await httpRequest(port: first.port, "POST", "/api/users/alice/send", key: Self.apiKey, json: #"{"message": "x"}"#)
        #expect(untyped.status == 400, "\(untyped.body)")
    }

    @Test func theLimitPerUserHoldsAcrossNodes() async throws {
        let redis = try await RedisServer.start()
        let secret = try NodeSecurityTests.secretFile()
        let arguments = ["--jwt-hs256-secret-file", secret, "--max-connections-per-user", "2"]
        let first = try await NodeProcess.start(redis: [redis.url], arguments: arguments)
        let second = try await NodeProcess.start(redis: [redis.url], arguments: arguments)
        defer { first.terminate(); second.terminate() }
        let alice = try await Self.token("alice")
        let one = try await ChatClient.connect(port: first.port, room: "x", query: "token=\(alice)")
        let two = try await ChatClient.connect(port: second.port, room: "x", query: "token=\(alice)")
        let three = try await ChatClient.connect(port: first.port, room: "x", query: "token=\(alice)")
        let close = await three.client.closed(timeout: .seconds(5))
        #expect(close?.code == 4429, "\(String(describing: close))")
        #expect(close?.reason.contains("--max-connections-per-user") == true, "\(close?.reason ?? "")")
        #expect(one.client.isOpen && two.client.isOpen)
        // Another user is not affected.
        let bob = try await ChatClient.connect(port: second.port, room: "x", query: "token=\(try await Self.token("bob"))")
        #expect(await bob.client.closed(timeout: .milliseconds(500)) == nil)

        // One closed on one node: the other node lets a new one in.
        await one.client.close()
        let again = await eventually(timeout: .seconds(10)) {
            guard let client = try? await ChatClient.connect(port: second.port, room: "x", query: "token=\(alice)") else { return false }
            if await client.client.closed(timeout: .milliseconds(500)) == nil { return true }
            return false
        }
        #expect(again)
        let metrics = try await first.get("/metrics")
        #expect(metrics.body.contains("channels_user_limit_refusals_total 1"), "\(metrics.body.split(separator: "\n").filter { $0.contains("user_limit") })")
    }

    /// SIGKILL a node holding the only member of a group and the only connection of a user: the other nodes
    /// take it out once (not once each) within 45 s: signed `group_vacated`, `member_removed`, `user_offline`,
    /// and one `leave` with `"reason": "node_lost"` for presence clients on each other node.
    @Test func aNodeThatDiesIsTakenOutOnceWithinTheLease() async throws {
        let redis = try await RedisServer.start()
        let receiver = try await Receiver()
        defer { receiver.stop() }
        let secret = try NodeSecurityTests.secretFile()
        let arguments = ["--jwt-hs256-secret-file", secret] + receiver.arguments
        let survivors = [
            try await NodeProcess.start(redis: [redis.url], arguments: arguments),
            try await NodeProcess.start(redis: [redis.url], arguments: arguments),
        ]
        let doomed = try await NodeProcess.start(redis: [redis.url], arguments: arguments)
        defer { for node in survivors { node.terminate() } }

        let watchers = [
            try await ChatClient.connect(port: survivors[0].port, room: "shared", query: "presence=1&token=\(try await Self.token("dave"))"),
            try await ChatClient.connect(port: survivors[1].port, room: "shared", query: "presence=1&token=\(try await Self.token("frank"))"),
        ]
        let carol = try await ChatClient.connect(port: doomed.port, room: "solo", query: "token=\(try await Self.token("carol"))")
        let erin = try await ChatClient.connect(port: doomed.port, room: "shared", query: "token=\(try await Self.token("erin"))")
        for watcher in watchers {
            #expect(await eventually { Self.objects(watcher).contains { $0["type"] as? String == "join" && $0["user"] as? String == "erin" } })
        }
        #expect(await eventually { receiver.delivered.contains { $0["name"] == "user_online" && $0["user"] == "carol" } })
        _ = (carol, erin)

        doomed.kill()
        let killedAt = ContinuousClock.now
        let gone: ([[String: String]]) -> Bool = { events in
            events.contains { $0["name"] == "group_vacated" && $0["group"] == "chat_solo" }
                && events.contains { $0["name"] == "member_removed" && $0["group"] == "chat_solo" && $0["user"] == "carol" }
                && events.contains { $0["name"] == "user_offline" && $0["user"] == "carol" }
                && events.contains { $0["name"] == "user_offline" && $0["user"] == "erin" }
        }
        #expect(await eventually(timeout: .seconds(45)) { gone(receiver.delivered) }, "\(receiver.delivered)")
        let took = ContinuousClock.now - killedAt
        #expect(took < .seconds(45), "taken out after \(took)")
        for watcher in watchers {
            #expect(await eventually(timeout: .seconds(10)) {
                Self.objects(watcher).contains { $0["type"] as? String == "leave" && $0["user"] as? String == "erin" }
            })
        }
        // Both survivors looked for dead nodes for a while more: still once each.
        try await Task.sleep(for: .seconds(7))
        let events = receiver.delivered
        for (name, key, value) in [
            ("group_vacated", "group", "chat_solo"), ("member_removed", "user", "carol"), ("user_offline", "user", "carol"),
            ("member_removed", "user", "erin"), ("user_offline", "user", "erin"),
        ] {
            #expect(events.filter { $0["name"] == name && $0[key] == value }.count == 1, "\(name) \(value): \(events)")
        }
        #expect(!events.contains { $0["name"] == "group_vacated" && $0["group"] == "chat_shared" }, "dave and frank are still there")
        #expect(receiver.posts.allSatisfy { $0.valid }, "a POST with a wrong signature")
        for watcher in watchers {
            let leaves = Self.objects(watcher).filter { $0["type"] as? String == "leave" && $0["user"] as? String == "erin" }
            #expect(leaves.count == 1, "\(leaves)")
            #expect(leaves.first?["reason"] as? String == "node_lost", "\(leaves)")
        }
    }

    /// A receiver that answers 500 twice, then 200: every event arrives once (among the 2xx answers), in the
    /// order it happened, each POST signed.
    @Test func aReceiverThatFailsFirstGetsEveryEventOnceInOrder() async throws {
        let redis = try await RedisServer.start()
        let receiver = try await Receiver(statuses: [500, 500])
        defer { receiver.stop() }
        let secret = try NodeSecurityTests.secretFile()
        let node = try await NodeProcess.start(redis: [redis.url], arguments: ["--jwt-hs256-secret-file", secret] + receiver.arguments)
        defer { node.terminate() }

        let alice = try await ChatClient.connect(port: node.port, room: "r1", query: "token=\(try await Self.token("alice"))")
        #expect(await eventually { alice.client.isOpen })
        await alice.client.close()
        let expected: [[String: String]] = [
            ["name": "user_online", "user": "alice"],
            ["name": "group_occupied", "group": "user.alice"],
            ["name": "group_occupied", "group": "chat_r1"],
            ["name": "member_added", "group": "chat_r1", "user": "alice"],
            ["name": "member_removed", "group": "chat_r1", "user": "alice"],
            ["name": "group_vacated", "group": "chat_r1"],
            ["name": "group_vacated", "group": "user.alice"],
            ["name": "user_offline", "user": "alice"],
        ]
        let matches: ([String: String], [String: String]) -> Bool = { event, wanted in wanted.allSatisfy { event[$0.key] == $0.value } }
        #expect(await eventually(timeout: .seconds(20)) { receiver.delivered.count >= expected.count }, "\(receiver.posts)")
        try await Task.sleep(for: .milliseconds(500))
        let delivered = receiver.delivered
        #expect(delivered.count == expected.count, "\(delivered)")
        // In order per group (and per user); a connection leaves its groups in no particular order.
        let key: ([String: String]) -> String = { $0["group"] ?? "user " + ($0["user"] ?? "") }
        for subject in Set(expected.map(key)) {
            let got = delivered.filter { key($0) == subject && ($0["group"] != nil || $0["name"]?.hasPrefix("user_") == true) }
            let wanted = expected.filter { key($0) == subject }
            #expect(got.count == wanted.count && zip(got, wanted).allSatisfy(matches), "\(subject): \(got) is not \(wanted)")
        }
        #expect(receiver.posts.prefix(2).allSatisfy { $0.status == 500 })
        // The failed POSTs carried the same first events again.
        #expect(receiver.posts.count >= 3 && receiver.posts[0].events.first == receiver.posts[2].events.first)
        #expect(receiver.posts.allSatisfy { $0.valid })
        let metrics = try await node.get("/metrics")
        #expect(metrics.body.contains("channels_webhook_failed_attempts_total 2"), "\(metrics.body.split(separator: "\n").filter { $0.contains("webhook") })")
    }

    @Test func webhooksNeedASecretAndThePubSubLayer() async throws {
        let missing = try await run(try NodeProcess.binary(), ["--webhook-url", "http://127.0.0.1:9/x", "--redis", "redis://127.0.0.1:9"], environment: [:])
        #expect(missing.status != 0 && missing.output.contains("--webhook-secret-file"), "\(missing.output)")
        let memory = try await run(try NodeProcess.binary(), ["--webhook-url", "http://127.0.0.1:9/x"], environment: [:])
        #expect(memory.status != 0 && memory.output.contains("pub/sub layer"), "\(memory.output)")
    }
}
