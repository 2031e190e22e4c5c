import ChannelsProtocol
import ChannelsTestSupport
import HiredisClient
import Testing

@testable import ChannelLayersRedis

/// The history script on a real Redis: what it keeps, what a new epoch drops, and the callers it serves.
@Suite struct HistoryScriptTests {
    static func publish(_ client: RedisClient, _ text: String, arguments extra: [RedisArgument]) async throws -> RedisReply {
        let message: Message = ["type": "chat.message", "message": .string(text)]
        return try await client.send(
            RedisCommand(
                "EVAL", arguments: [.string(HistoryScript.publish), 2, "asgi:history:{g}:meta", "asgi:history:{g}:stream", "asgi__group__g", .bytes(MessagePack.encode(message))] + extra
            )
        )
    }

    @Test func theSixArgumentFormOfEarlierCallersStillPublishes() async throws {
        let redis = try await RedisServer.start()
        let client = RedisClient(configuration: redis.configuration())
        let reply = try await Self.publish(client, "old caller", arguments: [1000, 300, 86400, "epoch1"])
        #expect(reply.array?.first?.integer == 1 && reply.array?.last?.string == "epoch1", "\(reply)")
        #expect(try await client.send("XLEN", "asgi:history:{g}:stream").integer == 1)
        await client.close()
    }

    @Test func aNewEpochDropsWhatAnOldStreamHeldAndBytesAreBounded() async throws {
        let redis = try await RedisServer.start()
        let client = RedisClient(configuration: redis.configuration())
        for index in 0..<10 { _ = try await Self.publish(client, "old \(index)", arguments: [1000, 300, 86400, "epoch1", "PUBLISH", 1_000_000]) }
        // The meta key is gone (expired, deleted), the stream is not: offsets restart, the old entries go.
        try await client.send("DEL", "asgi:history:{g}:meta")
        let reply = try await Self.publish(client, "new", arguments: [1000, 300, 86400, "epoch2", "PUBLISH", 1_000_000])
        #expect(reply.array?.first?.integer == 1 && reply.array?.last?.string == "epoch2", "\(reply)")
        #expect(try await client.send("XLEN", "asgi:history:{g}:stream").integer == 1)
        // 2 KiB messages against a 16 KiB bound: at most 16 KiB kept, the newest always.
        let big = String(repeating: "b", count: 2048)
        for index in 0..<40 { _ = try await Self.publish(client, "\(index) \(big)", arguments: [1000, 300, 86400, "epoch2", "PUBLISH", 16384]) }
        let bytes = Int(try await client.send("HGET", "asgi:history:{g}:meta", "bytes").string ?? "") ?? -1
        let length = try await client.send("XLEN", "asgi:history:{g}:stream").integer ?? -1
        #expect(bytes > 0 && bytes <= 16384 && (5...8).contains(length), "bytes \(bytes), length \(length)")
        await client.close()
    }
}
