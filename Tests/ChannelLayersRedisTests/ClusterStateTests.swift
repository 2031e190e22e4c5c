import ChannelLayers
import ChannelLayersRedis
import ChannelsProtocol
import ChannelsTestSupport
import Foundation
import HiredisClient
import NIOCore
import NIOPosix
import Synchronization
import Testing

/// An inbox that keeps what it gets (presence events reach inboxes, not queues) and the losses it is told of.
final class KeepingInbox: ChannelInbox {
    let eventLoop: any EventLoop = MultiThreadedEventLoopGroup.singleton.next()
    let received = Mutex<[Message]>([])
    let lost = Mutex<[String]>([])
    let takesPresenceEvents: Bool

    init(takesPresenceEvents: Bool = true) { self.takesPresenceEvents = takesPresenceEvents }

    func receive(_ delivery: Delivery) -> Bool {
        received.withLock { $0.append(delivery.message) }
        return false
    }

    func endOfBatch() {}
    func messagesLost(reason: String) { lost.withLock { $0.append(reason) } }
}

/// The cluster's shared state (`ClusterScripts`, `ClusterState`) on a real Redis: a node silent past its lease
/// is taken out once, its presence members leave with `node_lost`, and when it speaks again it states what it
/// holds, with events only for what changed.
@Suite struct ClusterStateTests {
    static func events(_ redis: RedisConnection) async throws -> [[String: String]] {
        let entries = try await redis.send("XRANGE", "asgi:{cluster}:webhooks", "-", "+").array ?? []
        return entries.compactMap { entry in
            guard let json = entry.array?.last?.array?.last?.string,
                let object = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any]
            else { return nil }
            return object.compactMapValues { $0 is NSNull ? "null" : "\($0)" }
        }
    }

    @Test func aSilentNodeIsTakenOutOnceAndStatesItselfAgainWhenItSpeaks() async throws {
        let server = try await RedisServer.start()
        let redis = try await server.inspector()
        _ = try await redis.send("SET", "asgi:{cluster}:webhooks:on", "1", "PX", "60000")
        var watcher = server.layerConfiguration(nodeID: "node-watcher")
        watcher.reapInterval = .milliseconds(200)
        var silent = server.layerConfiguration(nodeID: "node-silent")
        // It writes when it changes something, never on a timer: silent, its lease lapses after a second.
        silent.registryTTL = .seconds(1)
        silent.heartbeatInterval = .seconds(3600)
        silent.reapInterval = .seconds(3600)
        try await withRedisLayers([watcher, silent]) { layers in
            let (a, b) = (layers[0], layers[1])
            let inbox = KeepingInbox()
            let dave = try await a.newChannel(prefix: "specific.", inbox: inbox)
            try await a.groupAdd("room", channel: dave, presence: PresenceInfo(user: "dave"))
            let bob = try await b.newChannel()
            let bobCounted = try await b.userConnected("bob", limit: 0)
            #expect(bobCounted == .admitted(connections: 1))
            try await b.groupAdd("room", channel: bob, presence: PresenceInfo(user: "bob"))
            try await b.groupAdd("solo", channel: bob)

            // Taken out once, by the watcher: bob leaves the room with node_lost.
            #expect(await eventually(timeout: .seconds(8)) {
                (try? await redis.send("SISMEMBER", "asgi:{cluster}:nodes", "node-silent").integer) == 0
            })
            let leaves = { inbox.received.withLock { $0 }.filter { $0["event"]?.string == "leave" } }
            #expect(await eventually(timeout: .seconds(5)) { !leaves().isEmpty })
            try await Task.sleep(for: .milliseconds(600))
            #expect(leaves().count == 1, "\(leaves())")
            #expect(leaves().first?["channel"]?.string == bob && leaves().first?["reason"]?.string == "node_lost", "\(leaves())")
            let afterReap = try await Self.events(redis).map { "\($0["name"] ?? "") \($0["group"] ?? $0["user"] ?? "")" }
            for wanted in ["user_offline bob", "group_vacated solo", "member_removed room"] {
                #expect(afterReap.filter { $0 == wanted }.count == 1, "\(wanted): \(afterReap)")
            }
            #expect(!afterReap.contains("group_vacated room"), "dave is still in the room: \(afterReap)")

            // It speaks again: it states what it holds, and it is counted as before.
            try await b.groupAdd("later", channel: bob)
            #expect(await eventually(timeout: .seconds(5)) {
                (try? await redis.send("SISMEMBER", "asgi:{cluster}:nodes", "node-silent").integer) == 1
            })
            #expect(await eventually { (try? await redis.send("HGET", "asgi:{cluster}:user:bob", "node-silent").string) == "1" })
            let all = try await Self.events(redis).map { "\($0["name"] ?? "") \($0["group"] ?? $0["user"] ?? "")" }
            // Stated in one script, its events come together. Its lease lapses again a second after it spoke, so on
            // a slow run the watcher's second reap may follow them: only the first four are its statement.
            let again = Array(all.dropFirst(afterReap.count))
            #expect(Set(again.prefix(4)) == ["user_online bob", "group_occupied solo", "member_added room", "group_occupied later"], "\(again)")
            let statedAgain = again.dropFirst(4).filter { $0.hasPrefix("user_online") || $0.hasPrefix("group_occupied") || $0.hasPrefix("member_added") }
            #expect(statedAgain.isEmpty, "stated once: \(again)")
        }
    }

    @Test func theUserLimitCountsEveryNodeAndForgetsWhatLeft() async throws {
        let server = try await RedisServer.start()
        try await withRedisLayers([server.layerConfiguration(nodeID: "node-1"), server.layerConfiguration(nodeID: "node-2")]) { layers in
            let answers = [
                try await layers[0].userConnected("alice", limit: 2), try await layers[1].userConnected("alice", limit: 2),
                try await layers[0].userConnected("alice", limit: 2), try await layers[1].userConnected("bob", limit: 2),
            ]
            #expect(answers == [.admitted(connections: 1), .admitted(connections: 2), .refused(connections: 2), .admitted(connections: 1)])
            layers[1].userDisconnected("alice")
            let admitted = await eventually {
                guard case .admitted? = try? await layers[0].userConnected("alice", limit: 2) else { return false }
                return true
            }
            #expect(admitted)
        }
    }
}
