import ChannelsTestSupport
import ChannelsWebSocketClient
import Foundation
import Testing

/// Presence (issue 13): `?presence=1` gets who is in the room once joined, then `join` and `leave` events;
/// other clients get none of it; `channels-ctl presence` shows the same members with their token's `sub`.
@Suite(.serialized) struct PresenceTests {
    static func objects(_ client: ChatClient) -> [[String: Any]] {
        client.frames.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    @Test(arguments: ["memory", "redis"])
    func membersSeeWhoIsThereAndWhoComesAndGoes(layer: String) async throws {
        let redis = layer == "redis" ? try await RedisServer.start() : nil
        let secret = try NodeSecurityTests.secretFile()
        let first = try await NodeProcess.start(redis: redis.map { [$0.url] } ?? [], arguments: ["--jwt-hs256-secret-file", secret])
        let second = if let redis {
            try await NodeProcess.start(redis: [redis.url], arguments: ["--jwt-hs256-secret-file", secret])
        } else { first }
        let aliceToken = try await NodeSecurityTests.hs256(NodeSecurityTests.claims(sub: "alice"))
        let bobToken = try await NodeSecurityTests.hs256(NodeSecurityTests.claims(sub: "bob"))

        let alice = try await ChatClient.connect(port: first.port, room: "team", query: "presence=1&token=\(aliceToken)")
        #expect(await alice.waitForFrames(1))
        let snapshot = try #require(Self.objects(alice).first)
        #expect(snapshot["type"] as? String == "presence" && snapshot["group"] as? String == "chat_team")
        #expect((snapshot["members"] as? [[String: Any]])?.compactMap { $0["user"] as? String } == ["alice"])

        let quiet = try await ChatClient.connect(port: first.port, room: "team", query: "token=\(aliceToken)")
        let bob = try await ChatClient.connect(port: second.port, room: "team", query: "presence=1&token=\(bobToken)")
        #expect(await bob.waitForFrames(1))
        let bobSees = (Self.objects(bob).first?["members"] as? [[String: Any]])?.compactMap { $0["user"] as? String } ?? []
        #expect(Set(bobSees) == ["alice", "bob"], "\(bobSees)")
        #expect(await eventually { Self.objects(alice).contains { $0["type"] as? String == "join" && $0["user"] as? String == "bob" } })

        if let redis {
            let ctl = try await run(try builtProduct("channels-ctl"), ["presence", "chat_team", "--redis", redis.url, "--json"], environment: [:])
            #expect(ctl.status == 0)
            #expect(await eventually {
                let listed = try? await run(try builtProduct("channels-ctl"), ["presence", "chat_team", "--redis", redis.url], environment: [:])
                return listed?.output.contains("alice") == true && listed?.output.contains("bob") == true
            })
        }

        await bob.client.close()
        #expect(await eventually { Self.objects(alice).contains { $0["type"] as? String == "leave" && $0["user"] as? String == "bob" } })
        // A client that did not ask for presence gets only the room's messages.
        alice.say("hello")
        #expect(await quiet.waitForFrames(1))
        try await Task.sleep(for: .milliseconds(200))
        #expect(Self.objects(quiet).allSatisfy { $0["message"] != nil }, "\(quiet.frames)")
    }
}
