import ChannelsTestSupport
import HiredisClient
import Testing

@testable import ChannelLayersRedis

/// Scripts run by digest on a real Redis: the digest is Redis' own, and a server that does not know the
/// script (new, flushed) gets its source once, with no second run.
@Suite struct RedisScriptTests {
    /// Queues `script` on `connection` and waits for its handler.
    static func queued(_ script: RedisScript, _ arguments: [RedisArgument], on connection: RedisConnection) async -> Result<RedisReply, RedisError> {
        await withCheckedContinuation { continuation in
            let error = script.enqueue(arguments, on: connection) { continuation.resume(returning: $0) }
            if let error { continuation.resume(returning: .failure(error)) }
        }
    }

    /// A user set up with SECURITY.md's earlier ACL rule (`+eval`, no `+evalsha`), and the admin that made it.
    static func userWithoutEvalSha(on redis: RedisServer) async throws -> (admin: RedisClient, configuration: RedisConfiguration) {
        let admin = RedisClient(configuration: redis.configuration())
        try await admin.send("ACL", "SETUSER", "old", "on", ">old-password", "~*", "+@read", "+@write", "+@connection", "+eval")
        var configuration = redis.configuration()
        configuration.username = "old"
        configuration.password = "old-password"
        return (admin, configuration)
    }

    @Test func theDigestIsTheOneRedisGivesAndAnUnknownScriptIsLoadedOnce() async throws {
        let redis = try await RedisServer.start()
        let client = RedisClient(configuration: redis.configuration())
        let script = RedisScript("return redis.call('INCR', KEYS[1])")
        #expect(try await client.send("SCRIPT", "LOAD", .string(script.source)).string == script.digest)
        try await client.send("SCRIPT", "FLUSH")
        // Unknown to the server: the call by digest fails with NOSCRIPT and the script runs once, with its source.
        #expect(try await script.run([1, "counter"], on: client).integer == 1)
        #expect(try await client.send("SCRIPT", "EXISTS", .string(script.digest)).array?.first?.integer == 1, "the source call loaded it")
        #expect(try await script.run([1, "counter"], on: client).integer == 2)
        #expect(try await client.send("GET", "counter").string == "2", "each call ran once")
        // In a pipeline behind other commands: they run once, the script once, with its source when unknown.
        try await client.send("SCRIPT", "FLUSH")
        let replies = try await script.run(after: [RedisCommand("INCR", "before")], [1, "counter"], on: client)
        #expect(replies.map(\.integer) == [1, 3])
        #expect(try await client.send("GET", "before").string == "1", "the commands before the script are not sent again")
        #expect(try await script.run(after: [], [1, "counter"], on: client).map(\.integer) == [4])
        // The publish script of history groups, by digest, on a server that never saw it.
        let reply = try await HistoryScript.publishScript.run(
            [2, "asgi:history:{g}:meta", "asgi:history:{g}:stream", "asgi__group__g", .bytes([0x81, 0xa4] + Array("type".utf8) + [0xa1, UInt8(ascii: "m")]), 1000, 300, 86400, "e1"],
            on: client
        )
        #expect(reply.array?.first?.integer == 1 && reply.array?.last?.string == "e1", "\(reply)")
        await client.close()
    }

    /// Queued without waiting, a script goes with its source until it ran so on that very connection, then by
    /// digest; `SCRIPT FLUSH` under it fails the call queued by digest (a call queued behind it would overtake a
    /// second try), and the connection goes back to the source. A new connection starts with the source again.
    @Test func aQueuedScriptGoesWithItsSourceUntilItRanOnThatConnection() async throws {
        let redis = try await RedisServer.start()
        let connection = try await RedisConnection.connect(configuration: redis.configuration())
        let inspector = try await RedisConnection.connect(configuration: redis.configuration())
        let script = RedisScript("return redis.call('INCR', KEYS[1])")
        func queue() async -> Result<RedisReply, RedisError> { await Self.queued(script, [1, "counter"], on: connection) }
        func calls(_ command: String) async throws -> Int { try await RedisCoreChannelLayerTests.calls(command, inspector) }
        try await inspector.send("CONFIG", "RESETSTAT")

        #expect(try await queue().get() == .integer(1))
        #expect(try await calls("eval") == 1)
        // Then it asks, once, whether this user may send EVALSHA (an unknown digest: NOSCRIPT).
        #expect(await eventually { (try? await calls("evalsha")) == 1 })
        try await Task.sleep(for: .milliseconds(50))
        #expect(try await queue().get() == .integer(2))
        #expect(try await calls("evalsha") == 2, "by digest once it ran with its source here")
        #expect(try await calls("eval") == 1)
        try await inspector.send("SCRIPT", "FLUSH")
        guard case .success(.error(let text)) = await queue() else {
            Issue.record("a call by digest after SCRIPT FLUSH did not answer NOSCRIPT")
            return
        }
        #expect(text.hasPrefix("NOSCRIPT"))
        #expect(try await queue().get() == .integer(3), "the source again")
        #expect(try await calls("eval") == 2)

        let other = try await RedisConnection.connect(configuration: redis.configuration())
        #expect(try await Self.queued(script, [1, "counter"], on: other).get() == .integer(4))
        #expect(try await calls("eval") == 3, "a new connection starts with the source")
        // Each connection keeps its own mark (one per shard): both go by digest now, and the question was asked once.
        #expect(try await queue().get() == .integer(5))
        #expect(try await Self.queued(script, [1, "counter"], on: other).get() == .integer(6))
        #expect(try await calls("eval") == 3)
        #expect(try await calls("evalsha") == 5, "the question, two calls, the NOSCRIPT one, and these two")
        await connection.close()
        await other.close()
        await inspector.close()
    }

    /// A user whose ACL refuses `EVALSHA`: queued calls go with the source, every one runs, none fails.
    @Test func queuedCallsOfAUserWithoutEvalShaAllGoWithTheSource() async throws {
        let redis = try await RedisServer.start(password: "admin-password")
        let (admin, configuration) = try await Self.userWithoutEvalSha(on: redis)
        let connection = try await RedisConnection.connect(configuration: configuration)
        let script = RedisScript("return redis.call('INCR', KEYS[1])")
        var replies: [RedisReply] = []
        for _ in 0..<5 {
            replies.append(try await Self.queued(script, [1, "counter"], on: connection).get())
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(replies == (1...5).map { .integer($0) })
        #expect(!script.byDigest, "the NOPERM answer to the question is remembered")
        await connection.close()
        await admin.close()
    }

    @Test func anErrorOtherThanNoScriptIsThrownAsItCame() async throws {
        let redis = try await RedisServer.start()
        let client = RedisClient(configuration: redis.configuration())
        let script = RedisScript("return redis.error_reply('ERR refused by the script')")
        await #expect {
            _ = try await script.run([0], on: client)
        } throws: { error in
            guard let error = error as? RedisError else { return false }
            return error.code == .errorReply && error.serverMessage?.contains("refused by the script") == true
        }
        await client.close()
    }

    @Test func aUserWhoseACLRefusesEvalShaGetsTheSourceEveryTime() async throws {
        let redis = try await RedisServer.start(password: "admin-password")
        let (admin, configuration) = try await Self.userWithoutEvalSha(on: redis)
        let client = RedisClient(configuration: configuration)
        let script = RedisScript("return redis.call('INCR', KEYS[1])")
        #expect(script.byDigest)
        #expect(try await script.run([1, "counter"], on: client).integer == 1)
        #expect(!script.byDigest, "NOPERM on EVALSHA is remembered")
        #expect(try await script.run([1, "counter"], on: client).integer == 2)
        #expect(try await admin.send("GET", "counter").string == "2", "each call ran once")
        await client.close()
        await admin.close()
    }
}
