import ChannelLayersRedis
import ChannelsProtocol
import ChannelsTestSupport
import ChannelsWebSocketClient
import Foundation
import HiredisClient
import Testing

/// Issue 21's silent losses of recovering clients: a history that restarts under a live connection, offsets
/// from publishers other than the history script, positions the node cannot read, and histories read whole.
@Suite(.serialized) struct RecoveryHardeningTests {
    typealias Frame = RecoveryTests.Frame

    /// The chat frames (those with a `message`) a client got, in order.
    static func chat(_ client: ChatClient) -> [String] {
        RecoveryTests.frames(client).compactMap(\.message)
    }

    static func recoveryFrames(_ client: ChatClient) -> [Frame] {
        RecoveryTests.frames(client).filter { $0.object["type"] as? String == "recovery" }
    }

    /// Connects a recovering client and a plain one to room `room` on `node`, sends `m0..<count` before, and
    /// returns both with the epoch the recovering one holds.
    static func roomWithHistory(_ node: NodeProcess, room: String, before: Int) async throws -> (reader: ChatClient, publisher: ChatClient, epoch: String) {
        let publisher = try await ChatClient.connect(port: node.port, room: room)
        let reader = try await ChatClient.connect(port: node.port, room: room, query: "recover=1")
        #expect(await reader.waitForFrames(1))
        await RecoveryTests.publish(0..<before, via: publisher, witness: reader)
        let epoch = try #require(RecoveryTests.frames(reader).last?.epoch)
        return (reader, publisher, epoch)
    }

    @Test func aRecoveringClientHearsEveryMessageWhenTheGroupsHistoryKeysVanish() async throws {
        let redis = try await RedisServer.start()
        let node = try await NodeProcess.start(redis: [redis.url])
        let (reader, publisher, epoch) = try await Self.roomWithHistory(node, room: "vanish", before: 5)

        // The meta key expired after a quiet day, or someone deleted the history: offsets start again at 1.
        let client = RedisClient(configuration: redis.configuration())
        try await client.send("DEL", "asgi:history:{chat_vanish}:meta", "asgi:history:{chat_vanish}:stream")
        await client.close()

        await RecoveryTests.publish(5..<15, via: publisher, witness: publisher)
        _ = await eventually(timeout: .seconds(10)) { Self.chat(reader).count >= 15 }
        #expect(Self.chat(reader) == (0..<15).map { "m\($0)" }, "a recovering client must get every message of the new history")
        let notices = Self.recoveryFrames(reader).dropFirst()
        let notice = try #require(notices.first, "the client must be told its history restarted")
        #expect(notice.object["recovered"] as? Bool == false)
        #expect(notice.epoch != epoch && notice.offset == 0)
        let after = RecoveryTests.frames(reader).filter { $0.message != nil }.suffix(10)
        #expect(after.map(\.offset) == Array(1...10) && after.allSatisfy { $0.epoch == notice.epoch })
        #expect(try await node.get("/metrics").body.contains("channels_history_restarts_total 1"))
    }

    @Test func aRecoveringClientHearsEveryMessageAfterRedisRestartsWithoutPersistence() async throws {
        let redis = try await RedisServer.start()
        let first = try await NodeProcess.start(redis: [redis.url])
        let second = try await NodeProcess.start(redis: [redis.url])
        let (reader, _, epoch) = try await Self.roomWithHistory(first, room: "restart", before: 5)

        redis.kill()
        try await redis.restart()
        // Both nodes resubscribe by themselves; a client of the other node then publishes into the new history.
        let publisher = try await eventuallyConnected(port: second.port, room: "restart")
        #expect(await eventually(timeout: .seconds(20)) { (try? await first.get("/readyz").status) == 200 })
        #expect(await eventually(timeout: .seconds(20)) { (try? await second.get("/readyz").status) == 200 })
        // The reader was told its subscription was lost; it must still hear every message of the new history.
        await RecoveryTests.publish(100..<110, via: publisher, witness: publisher)
        _ = await eventually(timeout: .seconds(10)) { Self.chat(reader).contains("m109") }
        #expect(Array(Self.chat(reader).dropFirst(5)) == (100..<110).map { "m\($0)" })
        let notice = try #require(Self.recoveryFrames(reader).dropFirst().first)
        #expect(notice.object["recovered"] as? Bool == false && notice.epoch != epoch)
    }

    /// A chat client of `room`, retried while the node refuses connections (its Redis is coming back).
    func eventuallyConnected(port: Int, room: String) async throws -> ChatClient {
        for _ in 0..<100 {
            if let client = try? await ChatClient.connect(port: port, room: room) {
                try await Task.sleep(for: .milliseconds(200))
                if client.client.isOpen { return client }
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        throw TestSupportError("could not connect to room \(room) on port \(port)")
    }

    @Test func anOffsetFromOutsideTheHistoryDoesNotSilenceARoom() async throws {
        let redis = try await RedisServer.start()
        let (keyFile, key) = try Self.apiKeyFile()
        defer { try? FileManager.default.removeItem(atPath: keyFile) }
        let node = try await NodeProcess.start(redis: [redis.url], arguments: ["--api-key-file", keyFile])
        let other = try await NodeProcess.start(redis: [redis.url])
        let (reader, publisher, _) = try await Self.roomWithHistory(node, room: "forged", before: 3)
        let farReader = try await ChatClient.connect(port: other.port, room: "forged", query: "recover=1")
        #expect(await farReader.waitForFrames(1))

        // Through the HTTP API's group route, with the history's keys in the body.
        let sent = try await httpRequest(
            port: node.port, "POST", "/api/groups/chat_forged/send", key: key,
            json: #"{"type": "chat.message", "message": "api", "__offset": 9000000000000000000, "__epoch": "zzzz"}"#
        )
        #expect(sent.status == 202)
        // A plain PUBLISH on the group's channel, as any process on the Redis can.
        let forged: Message = ["type": "chat.message", "message": "plain", "__offset": .int(9_000_000_000_000_000_000), "__epoch": "zzzz"]
        let client = RedisClient(configuration: redis.configuration())
        try await client.send("PUBLISH", "asgi__group__chat_forged", .bytes(MessagePack.encode(forged)))
        await client.close()

        await RecoveryTests.publish(3..<13, via: publisher, witness: publisher)
        for listener in [reader, farReader] {
            _ = await eventually(timeout: .seconds(10)) { Self.chat(listener).contains("m12") }
            let got = Self.chat(listener)
            #expect(got.filter { $0.hasPrefix("m") }.suffix(10) == (3..<13).map { "m\($0)" }[...], "every real message after a forged offset")
            #expect(got.contains("api") && got.contains("plain"), "the messages themselves still arrive")
        }
        // The API's message got a real offset; the plain one none: no frame claims an offset near 9e18.
        #expect(RecoveryTests.frames(reader).allSatisfy { ($0.offset ?? 0) < 1000 })
        #expect(try await other.get("/metrics").body.contains("channels_untrusted_offsets_total 1"))
    }

    @Test(arguments: ["offset=-1&epoch=E", "offset=abc&epoch=E", "offset=1e3&epoch=E", "offset=99999999999999999999&epoch=E", "offset=3", "epoch=E"])
    func aPositionTheNodeCannotReadIsNotARecovery(position: String) async throws {
        let node = try await NodeProcess.start()
        let (_, publisher, epoch) = try await Self.roomWithHistory(node, room: "params", before: 3)
        let query = "recover=1&" + position.replacingOccurrences(of: "E", with: epoch)
        let client = try await ChatClient.connect(port: node.port, room: "params", query: query)
        #expect(await client.waitForFrames(1))
        let answer = try #require(RecoveryTests.frames(client).first)
        #expect(answer.object["type"] as? String == "recovery")
        #expect(answer.object["recovered"] as? Bool == false, "\(position) is not a position the node can continue from")
        #expect(answer.offset == 3 && answer.epoch == epoch)
        publisher.say("after")
        #expect(await client.waitForFrames(2))
        #expect(Self.chat(client) == ["after"])
    }

    static func apiKeyFile() throws -> (path: String, key: String) {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("api-keys-\(UUID().uuidString)")
        let key = "test-key-0123456789abcdef"
        try key.write(to: file, atomically: true, encoding: .utf8)
        return (file.path, key)
    }

    @Test func historyIsBoundedByBytesAndReadInPages() async throws {
        let redis = try await RedisServer.start()
        let (keyFile, key) = try Self.apiKeyFile()
        defer { try? FileManager.default.removeItem(atPath: keyFile) }
        let node = try await NodeProcess.start(
            redis: [redis.url], arguments: ["--history-max-bytes", "262144", "--max-message-size", "65536", "--api-key-file", keyFile]
        )
        let publisher = try await ChatClient.connect(port: node.port, room: "big")
        let filler = String(repeating: "x", count: 60 * 1024)
        for index in 0..<40 { publisher.say("\(index)-\(filler)") }
        #expect(await publisher.waitForFrames(40, timeout: .seconds(20)))

        let client = RedisClient(configuration: redis.configuration())
        defer { Task { await client.close() } }
        let length = try await client.send("XLEN", "asgi:history:{chat_big}:stream").integer ?? -1
        let bytes = try await client.send("HGET", "asgi:history:{chat_big}:meta", "bytes").string.flatMap { Int($0) } ?? -1
        // 256 KiB holds four of these; the newest is always kept.
        #expect((1...4).contains(length), "the stream holds \(length) messages of 60 KiB for a 256 KiB bound")
        #expect(bytes > 0 && bytes <= 262_144)

        // Small messages, many of them: a recovery from 0 gets them all, in order, read in pages.
        let chatter = try await ChatClient.connect(port: node.port, room: "pages")
        await RecoveryTests.publish(0..<450, via: chatter, witness: chatter)
        let epoch = try #require(RecoveryTests.frames(chatter).last?.epoch)
        let back = try await ChatClient.connect(port: node.port, room: "pages", query: "recover=1&epoch=\(epoch)&offset=0")
        chatter.say("live")
        _ = await eventually(timeout: .seconds(20)) { Self.chat(back).contains("live") }
        #expect(Self.chat(back) == (0..<450).map { "m\($0)" } + ["live"])
        #expect(RecoveryTests.frames(back).filter { $0.message != nil }.map(\.offset) == (1...451).map { Int($0) })
        // The API reads what it answers: `since=0&limit=1` costs one message, not the stream.
        let before = LayerOutageTests.value(of: "channels_history_bytes_read_total", in: try await node.get("/metrics").body) ?? -1
        let api = try await httpGet(port: node.port, path: "/api/groups/chat_pages/history?since=0&limit=1", headers: ["Authorization": "Bearer \(key)"])
        #expect(api.status == 200)
        let answer = try JSONSerialization.jsonObject(with: Data(api.body.utf8)) as? [String: Any]
        #expect((answer?["messages"] as? [Any])?.count == 1)
        let after = LayerOutageTests.value(of: "channels_history_bytes_read_total", in: try await node.get("/metrics").body) ?? -1
        #expect(before > 0 && after - before > 0 && after - before < 1024, "read \(after - before) bytes for one message")
    }

    @Test func recoveringClientsThatDoNotReadHoldAPageEachNotTheHistory() async throws {
        let redis = try await RedisServer.start()
        let node = try await NodeProcess.start(redis: [redis.url], arguments: ["--history-max-bytes", "16777216"])
        // 750 messages of 16 KiB written by the history script itself, as a node would.
        let client = RedisClient(configuration: redis.configuration())
        let filler = String(repeating: "y", count: 16 * 1024)
        var epoch = ""
        for index in 0..<750 {
            let message: Message = ["type": "chat.message", "message": .string("\(index)-\(filler)")]
            let reply = try await client.send(
                "EVAL", .string(HistoryScript.publish), 2, "asgi:history:{chat_replay}:meta", "asgi:history:{chat_replay}:stream",
                "asgi__group__chat_replay", .bytes(MessagePack.encode(message)), 1000, 300, 86400, "epochone", "PUBLISH", 16_777_216
            )
            epoch = reply.array?.last?.string ?? ""
        }
        await client.close()
        #expect(epoch == "epochone")
        let before = NodeFaultTests.rss(of: node.processIdentifier)

        // 20 clients ask for the whole 12 MiB history and never read: the old node read and queued all of it
        // for each (240 MiB); paged behind the socket, each holds about one page.
        var readers: [ChatClient] = []
        for _ in 0..<20 {
            let reader = try await ChatClient.connect(port: node.port, room: "replay", query: "recover=1&epoch=\(epoch)&offset=0")
            reader.client.setReading(false)
            readers.append(reader)
        }
        try await Task.sleep(for: .seconds(3))
        let grown = (NodeFaultTests.rss(of: node.processIdentifier) - before) / 1024
        print("20 non-reading recoveries of a 12 MiB history: node RSS grew \(grown) MiB")
        #expect(grown < 60, "RSS grew \(grown) MiB for 20 clients that do not read")
        // They are still served: one that starts reading gets the history in order.
        let first = readers[0]
        first.client.setReading(true)
        #expect(await first.waitForFrames(41, timeout: .seconds(30)))
        #expect(RecoveryTests.frames(first).dropFirst().prefix(40).compactMap(\.offset) == (1...40).map { Int($0) })
        // Their close handshakes would wait behind what they never read.
        for reader in readers { reader.client.abort() }
    }
}
