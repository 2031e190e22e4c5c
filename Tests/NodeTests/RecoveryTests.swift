import ChannelsTestSupport
import ChannelsWebSocketClient
import Foundation
import Testing

/// Group history and `?recover=1` (issue 13's wire contract): offsets and epochs on every frame of a history
/// group, the recovery answer first, then what was missed, then live messages, with no gap and no duplicate.
@Suite(.serialized) struct RecoveryTests {
    struct Frame {
        let object: [String: Any]
        var offset: Int? { object["offset"] as? Int }
        var epoch: String? { object["epoch"] as? String }
        var message: String? { object["message"] as? String }
    }

    static func frames(_ client: ChatClient) -> [Frame] {
        client.frames.compactMap { text in
            (try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]).map(Frame.init)
        }
    }

    static func say(_ publisher: ChatClient, _ texts: some Sequence<String>) {
        for text in texts { publisher.say(text) }
    }

    /// Sends `count` messages from a client of `node` and waits until `witness` saw them.
    static func publish(_ range: Range<Int>, via publisher: ChatClient, witness: ChatClient) async {
        say(publisher, range.map { "m\($0)" })
        _ = await eventually(timeout: .seconds(10)) { frames(witness).contains { $0.message == "m\(range.upperBound - 1)" } }
    }

    @Test(arguments: ["memory", "redis"])
    func aClientThatReconnectsGetsWhatItMissedOnceAndInOrder(layer: String) async throws {
        let redis = layer == "redis" ? try await RedisServer.start() : nil
        let first = try await NodeProcess.start(redis: redis.map { [$0.url] } ?? [])
        // Over Redis the client comes back to another node.
        let second = if let redis { try await NodeProcess.start(redis: [redis.url]) } else { first }
        let publisher = try await ChatClient.connect(port: first.port, room: "history")

        let reader = try await ChatClient.connect(port: first.port, room: "history", query: "recover=1")
        #expect(await reader.waitForFrames(1))
        let answer = try #require(Self.frames(reader).first)
        #expect(answer.object["type"] as? String == "recovery" && answer.object["recovered"] as? Bool == true)
        #expect(answer.offset == 0)

        await Self.publish(0..<5, via: publisher, witness: reader)
        let seen = Self.frames(reader).dropFirst()
        #expect(seen.map(\.offset) == [1, 2, 3, 4, 5])
        #expect(seen.map(\.message) == ["m0", "m1", "m2", "m3", "m4"])
        let epoch = try #require(seen.last?.epoch)
        #expect(seen.allSatisfy { $0.epoch == epoch } && !epoch.isEmpty)
        // The epoch a client got before the group's first message is the one that message carries.
        #expect(answer.epoch == epoch)
        await reader.client.close()

        await Self.publish(5..<10, via: publisher, witness: publisher)
        let back = try await ChatClient.connect(port: second.port, room: "history", query: "recover=1&epoch=\(epoch)&offset=5")
        #expect(await back.waitForFrames(6))
        publisher.say("live")
        #expect(await back.waitForFrames(7))
        try await Task.sleep(for: .milliseconds(300))
        let recovered: [Frame] = Self.frames(back)
        let head: Frame? = recovered.first
        #expect(head?.object["type"] as? String == "recovery")
        #expect(head?.object["recovered"] as? Bool == true)
        #expect(head?.offset == 10 && head?.epoch == epoch)
        let rest: [Frame] = Array(recovered.dropFirst())
        #expect(rest.map { $0.offset } == [6, 7, 8, 9, 10, 11])
        #expect(rest.map { $0.message } == ["m5", "m6", "m7", "m8", "m9", "live"])

        // Another epoch, or an offset the history no longer holds: recovered is false and nothing is replayed.
        let stranger = try await ChatClient.connect(port: second.port, room: "history", query: "recover=1&epoch=other&offset=3")
        #expect(await stranger.waitForFrames(1))
        let refused = try #require(Self.frames(stranger).first)
        #expect(refused.object["recovered"] as? Bool == false && refused.offset == 11 && refused.epoch == epoch)
        publisher.say("after")
        #expect(await stranger.waitForFrames(2))
        #expect(Self.frames(stranger).dropFirst().map(\.message) == ["after"])
    }

    @Test func historyThatNoLongerReachesTheClientsOffsetIsNotARecovery() async throws {
        let node = try await NodeProcess.start(arguments: ["--history-size", "3"])
        let publisher = try await ChatClient.connect(port: node.port, room: "short")
        await Self.publish(0..<10, via: publisher, witness: publisher)
        let epoch = try #require(Self.frames(publisher).last?.epoch)
        let late = try await ChatClient.connect(port: node.port, room: "short", query: "recover=1&epoch=\(epoch)&offset=2")
        #expect(await late.waitForFrames(1))
        #expect(Self.frames(late).first?.object["recovered"] as? Bool == false)
        let recent = try await ChatClient.connect(port: node.port, room: "short", query: "recover=1&epoch=\(epoch)&offset=7")
        #expect(await recent.waitForFrames(4))
        #expect(Self.frames(recent).first?.object["recovered"] as? Bool == true)
        #expect(Self.frames(recent).dropFirst().map(\.offset) == [8, 9, 10])
    }

    @Test func messagesPublishedWhileAClientRecoversArriveOnceWithoutAGap() async throws {
        let redis = try await RedisServer.start()
        let nodes = [try await NodeProcess.start(redis: [redis.url]), try await NodeProcess.start(redis: [redis.url])]
        let publisher = try await ChatClient.connect(port: nodes[0].port, room: "busy")
        let first = try await ChatClient.connect(port: nodes[0].port, room: "busy", query: "recover=1")
        await Self.publish(0..<20, via: publisher, witness: first)
        let epoch = try #require(Self.frames(first).last?.epoch)
        let last = try #require(Self.frames(first).last?.offset)
        await first.client.close()
        // A steady stream while clients reconnect, one after another, to the other node.
        let sending = Task {
            for index in 20..<400 {
                publisher.say("m\(index)")
                try? await Task.sleep(for: .milliseconds(2))
            }
        }
        var clients: [ChatClient] = []
        for _ in 0..<5 {
            clients.append(try await ChatClient.connect(port: nodes[1].port, room: "busy", query: "recover=1&epoch=\(epoch)&offset=\(last)"))
            try await Task.sleep(for: .milliseconds(60))
        }
        await sending.value
        for client in clients {
            #expect(await eventually(timeout: .seconds(15)) { Self.frames(client).last?.message == "m399" })
            let offsets = Self.frames(client).dropFirst().compactMap(\.offset)
            #expect(Self.frames(client).first?.object["recovered"] as? Bool == true)
            #expect(offsets == Array((last + 1)...400), "first \(offsets.prefix(3)), count \(offsets.count)")
        }
    }
}
