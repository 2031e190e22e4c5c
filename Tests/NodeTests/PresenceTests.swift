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

    /// An HS256 token with this payload's claims (an `exp` five minutes ahead is added).
    static func token(_ claims: String) -> String {
        let payload = #"{"exp":\#(Int(Date().timeIntervalSince1970) + 300),"# + claims + "}"
        return JWTHeaderTests.token(header: #"{"alg":"HS256","typ":"JWT"}"#, payload: payload, sign: JWTHeaderTests.hmac)
    }

    /// Other nodes read a member's presence from the registry, whose values they parse with bounds (8 KiB, 8
    /// levels): an `info` claim past them made its user invisible there. The handshake refuses an `info` over
    /// 4 KiB or 6 levels and a `sub` over 512 bytes (together they stay within the bounds); one at the limits is seen.
    @Test func presenceInfoOtherNodesCannotReadIsRefusedAtTheHandshake() async throws {
        let redis = try await RedisServer.start()
        let secret = try NodeSecurityTests.secretFile()
        let first = try await NodeProcess.start(redis: [redis.url], arguments: ["--jwt-hs256-secret-file", secret])
        let second = try await NodeProcess.start(redis: [redis.url], arguments: ["--jwt-hs256-secret-file", secret])

        let big = #"{"bio":"\#(String(repeating: "x", count: 9 * 1024))"}"#
        let deep = String(repeating: #"{"a":"#, count: 9) + "1" + String(repeating: "}", count: 9)
        let long = String(repeating: "m", count: 513)
        for (claims, claim, limit) in [
            (#""sub":"mallory","info":"# + big, "info", "4096 bytes"), (#""sub":"mallory","info":"# + deep, "info", "6 levels"),
            (#""sub":"\#(long)""#, "sub", "512 bytes"),
        ] {
            let client = try await ChatClient.connect(port: first.port, room: "limits", query: "presence=1&token=\(Self.token(claims))")
            let close = await client.client.closed(timeout: .seconds(5))
            #expect(close?.code == 4401, "a \(claim) claim past \(limit) was let in")
            #expect(close?.reason.contains(claim) == true && close?.reason.contains(limit) == true, "\(close?.reason ?? "")")
        }

        // At the limits: 6 levels deep and 4,096 bytes as JSON, and another node lists it.
        let prefix = #"{"deep":{"a":{"a":{"a":{"a":{"a":1}}}}},"bio":""#
        let atLimit = prefix + String(repeating: "y", count: 4096 - prefix.utf8.count - 2) + #""}"#
        #expect(atLimit.utf8.count == 4096)
        let carol = try await ChatClient.connect(port: first.port, room: "limits", query: "presence=1&token=\(Self.token(#""sub":"carol","info":"# + atLimit))")
        #expect(await carol.waitForFrames(1))
        #expect(carol.client.isOpen)
        let dave = try await ChatClient.connect(port: second.port, room: "limits", query: "presence=1&token=\(Self.token(#""sub":"dave""#))")
        #expect(await dave.waitForFrames(1))
        let members = (Self.objects(dave).first?["members"] as? [[String: Any]]) ?? []
        let seen = members.first { $0["user"] as? String == "carol" }
        #expect(seen != nil, "\(members)")
        #expect(((seen?["info"] as? [String: Any])?["bio"] as? String)?.count == 4096 - prefix.utf8.count - 2)
    }

    /// A numeric `sub` is its decimal string wherever the node reads it: presence lists user "42", and
    /// `POST /api/users/42/disconnect` closes its connections (it showed user null and could not be closed).
    @Test func aNumericSubIsItsDecimalString() async throws {
        let redis = try await RedisServer.start()
        let secret = try NodeSecurityTests.secretFile()
        let keys = try apiKeyFile([ServerAPITests.key])
        let first = try await NodeProcess.start(redis: [redis.url], arguments: ["--jwt-hs256-secret-file", secret, "--api-key-file", keys])
        let second = try await NodeProcess.start(redis: [redis.url], arguments: ["--jwt-hs256-secret-file", secret, "--api-key-file", keys])

        let numeric = try await ChatClient.connect(port: first.port, room: "numbers", query: "presence=1&token=\(Self.token(#""sub":42"#))")
        #expect(await numeric.waitForFrames(1))
        let mine = (Self.objects(numeric).first?["members"] as? [[String: Any]])?.compactMap { $0["user"] as? String }
        #expect(mine == ["42"])
        let other = try await ChatClient.connect(port: second.port, room: "numbers", query: "presence=1&token=\(Self.token(#""sub":"erin""#))")
        #expect(await other.waitForFrames(1))
        let users = (Self.objects(other).first?["members"] as? [[String: Any]])?.compactMap { $0["user"] as? String } ?? []
        #expect(Set(users) == ["42", "erin"], "\(Self.objects(other))")

        let answer = try await httpRequest(port: second.port, "POST", "/api/users/42/disconnect", key: ServerAPITests.key, json: #"{"code": 4000, "reason": "bye 42"}"#)
        #expect(answer.status == 202, "\(answer.body)")
        #expect(answer.json?["disconnected"] as? Int == 1, "\(answer.body)")
        let close = await numeric.client.closed(timeout: .seconds(5))
        #expect(close?.code == 4000 && close?.reason == "bye 42")
        #expect(other.client.isOpen)

        // A sub that is neither a string nor an integer names nobody: refused like other malformed claims.
        for sub in ["4.5", "true", #"{"id":1}"#] {
            let client = try await ChatClient.connect(port: first.port, room: "numbers", query: "token=\(Self.token(#""sub":"# + sub))")
            let refused = await client.client.closed(timeout: .seconds(5))
            #expect(refused?.code == 4401 && refused?.reason.contains("sub") == true, "sub \(sub): \(String(describing: refused))")
        }
    }
}
