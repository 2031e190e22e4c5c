import ChannelLayers
import ChannelLayersRedis
import ChannelsProtocol
import ChannelsTestSupport
import HiredisClient
import Synchronization
import Testing

@Suite struct RedisPubSubChannelLayerTests {
    @Test func groupSendReachesEveryMemberOnEveryProcessOnceWithOnePublish() async throws {
        let server = try await RedisServer.start()
        let inspector = try await server.inspector()
        try await withRedisLayers([server.layerConfiguration(nodeID: "node-a"), server.layerConfiguration(nodeID: "node-b")]) { layers in
            var members: [(RedisPubSubChannelLayer, String)] = []
            for index in 0..<50 {
                let layer = layers[index % 2]
                let channel = try await layer.newChannel()
                #expect(channel.hasPrefix("asgispecific."))
                try await layer.groupAdd("chat_lobby", channel: channel)
                members.append((layer, channel))
            }
            // One subscription per process, whatever the number of local members.
            #expect(try await numberOfSubscribers(inspector, "asgi__group__chat_lobby") == 2)

            let before = try await publishCalls(inspector)
            try await layers[0].groupSend(["type": "chat.message", "message": "hi"], to: "chat_lobby")
            #expect(try await publishCalls(inspector) - before == 1)

            for (layer, channel) in members {
                #expect(try await layer.receive(from: channel) == ["type": "chat.message", "message": "hi"])
            }
            // Exactly once: nothing else is queued for anyone.
            let delivered = layers[0].statistics.deliveries + layers[1].statistics.deliveries
            #expect(delivered == 50)
        }
    }

    /// A join or leave with presence reaches, on every process, the inboxes that take presence events, and no
    /// other: a room's members that did not ask for presence are not called for each join.
    @Test func presenceEventsReachOnlyTheInboxesThatTakeThem() async throws {
        let server = try await RedisServer.start()
        let inspector = try await server.inspector()
        try await withRedisLayers([server.layerConfiguration(nodeID: "node-a"), server.layerConfiguration(nodeID: "node-b")]) { layers in
            var listening: [KeepingInbox] = []
            var declining: [KeepingInbox] = []
            for layer in layers {
                // A member with presence makes its process listen to the group's presence events.
                let resident = try await layer.newChannel(prefix: "specific.", inbox: KeepingInbox(takesPresenceEvents: false))
                try await layer.groupAdd("room", channel: resident, presence: PresenceInfo())
            }
            #expect(await eventually { (try? await numberOfSubscribers(inspector, "asgi__presence__room")) == 2 })
            for layer in layers {
                for takes in [true, false] {
                    let inbox = KeepingInbox(takesPresenceEvents: takes)
                    try await layer.groupAdd("room", channel: try await layer.newChannel(prefix: "specific.", inbox: inbox))
                    if takes { listening.append(inbox) } else { declining.append(inbox) }
                }
            }
            let joining = try await layers[0].newChannel(prefix: "specific.", inbox: KeepingInbox(takesPresenceEvents: false))
            try await layers[0].groupAdd("room", channel: joining, presence: PresenceInfo(user: "ann"))
            try await layers[0].groupSend(["type": "chat.message", "message": "hi"], to: "room")
            try await layers[0].groupDiscard("room", channel: joining)
            try await layers[1].groupSend(["type": "chat.message", "message": "after"], to: "room")
            func seen(_ inbox: KeepingInbox) -> Set<String> {
                Set(inbox.received.withLock { $0.map { [$0.type ?? "?", $0["event"]?.string, $0["user"]?.string, $0["message"]?.string].compactMap { $0 }.joined(separator: " ") } })
            }
            let everything: Set = ["channels.presence join ann", "channels.presence leave ann", "chat.message hi", "chat.message after"]
            #expect(await eventually { listening.allSatisfy { seen($0) == everything } && declining.allSatisfy { seen($0).count == 2 } })
            // What a declining inbox would have been handed comes with what the listening ones got; give it time anyway.
            try await Task.sleep(for: .milliseconds(200))
            for inbox in declining { #expect(seen(inbox) == ["chat.message hi", "chat.message after"]) }
            for inbox in listening { #expect(inbox.received.withLock { $0.count } == 4) }
        }
    }

    /// Group sends started without waiting reach every member on every process in the order they were
    /// started, through the history script and through a plain `PUBLISH`; each receipt confirms, and the
    /// history numbers them in that order. With Redis gone a send is not started, or its receipt fails.
    @Test func startedGroupSendsArriveInOrderAndAreConfirmed() async throws {
        let server = try await RedisServer.start()
        var configurations = [server.layerConfiguration(nodeID: "node-a"), server.layerConfiguration(nodeID: "node-b")]
        for index in configurations.indices { configurations[index].history = HistoryConfiguration(patterns: ["chat_*"]) }
        try await withRedisLayers(configurations) { layers in
            var inboxes: [KeepingInbox] = []
            for index in 0..<4 {
                let inbox = KeepingInbox()
                let channel = try await layers[index % 2].newChannel(prefix: "specific.", inbox: inbox)
                try await layers[index % 2].groupAdd("chat_room", channel: channel)
                try await layers[index % 2].groupAdd("plain", channel: channel)
                inboxes.append(inbox)
            }
            // Started from a task with a live connection: the first send connects it.
            try await layers[0].groupSend(["type": "warm.up"], to: "plain")
            var receipts: [GroupSendReceipt] = []
            for number in 0..<500 {
                for group in ["chat_room", "plain"] {
                    let receipt = try #require(try layers[0].startGroupSend(["type": "numbered", "n": .int(Int64(number)), "g": .string(group)], to: group))
                    receipts.append(receipt)
                }
            }
            for receipt in receipts { try await receipt.confirmed() }
            func numbers(_ inbox: KeepingInbox, _ group: String) -> [Int] {
                inbox.received.withLock { $0.filter { $0["g"]?.string == group }.compactMap { $0["n"]?.int.map(Int.init) } }
            }
            #expect(await eventually { inboxes.allSatisfy { numbers($0, "chat_room").count >= 500 && numbers($0, "plain").count >= 500 } })
            for inbox in inboxes {
                #expect(numbers(inbox, "chat_room") == Array(0..<500))
                #expect(numbers(inbox, "plain") == Array(0..<500))
            }
            let history = try #require(try await layers[1].history(of: "chat_room", after: nil, limit: 1000))
            #expect(history.messages.map { $0.message["n"]?.int } == (0..<500).map { Int64($0) })
            #expect(history.messages.map(\.offset) == (1...500).map { Int64($0) })

            server.kill()
            #expect(try await isRefusedOrUnavailable(layers[0], ["type": "too.late"], to: "plain"), "a send started on a dead Redis is refused or fails as unavailable")
            #expect(throws: ChannelLayerError.self) { try layers[0].startGroupSend(["type": "x"], to: "bad group name") }
        }
    }

    @Test func lastLeaveUnsubscribesAndDiscardedMembersGetNothing() async throws {
        let server = try await RedisServer.start()
        let inspector = try await server.inspector()
        try await withRedisLayers([server.layerConfiguration(nodeID: "node-a")]) { layers in
            let layer = layers[0]
            let a = try await layer.newChannel()
            let b = try await layer.newChannel()
            try await layer.groupAdd("room", channel: a)
            try await layer.groupAdd("room", channel: b)
            try await layer.groupDiscard("room", channel: a)
            #expect(try await numberOfSubscribers(inspector, "asgi__group__room") == 1)
            try await layer.groupSend(["type": "x"], to: "room")
            #expect(try await layer.receive(from: b) == ["type": "x"])
            #expect(layer.statistics.deliveries == 1)

            await layer.deleteChannel(b)
            let unsubscribed = await eventually { (try? await numberOfSubscribers(inspector, "asgi__group__room")) == 0 }
            #expect(unsubscribed)
            #expect(layer.statistics.localGroups == 0)
        }
    }

    @Test func racingJoinsAndLeavesConverge() async throws {
        let server = try await RedisServer.start()
        let inspector = try await server.inspector()
        try await withRedisLayers([server.layerConfiguration(nodeID: "node-a")]) { layers in
            let layer = layers[0]
            let channels = try await (0..<20).asyncMap { _ in try await layer.newChannel() }
            for round in 0..<20 {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for channel in channels {
                        group.addTask {
                            try await layer.groupAdd("flappy", channel: channel)
                            try await layer.groupDiscard("flappy", channel: channel)
                        }
                    }
                    try await group.waitForAll()
                }
                if round == 19 { try await layer.groupAdd("flappy", channel: channels[0]) }
            }
            let settled = await eventually { (try? await numberOfSubscribers(inspector, "asgi__group__flappy")) == 1 }
            #expect(settled)
            try await layer.groupSend(["type": "after.race"], to: "flappy")
            #expect(try await layer.receive(from: channels[0]).type == "after.race")
        }
    }

    @Test func directSendsBetweenProcessesAndLocally() async throws {
        let server = try await RedisServer.start()
        try await withRedisLayers([server.layerConfiguration(nodeID: "node-a", capacity: 3), server.layerConfiguration(nodeID: "node-b")]) { layers in
            let onA = try await layers[0].newChannel()
            let onB = try await layers[1].newChannel()
            try await layers[0].send(["type": "to.b", "raw": .bytes([0, 255])], to: onB)
            #expect(try await layers[1].receive(from: onB) == ["type": "to.b", "raw": .bytes([0, 255])])
            try await layers[1].send(["type": "to.a"], to: onA)
            #expect(try await layers[0].receive(from: onA).type == "to.a")

            // A local channel at capacity: send throws ChannelFull, as in Django.
            for _ in 0..<3 { try await layers[0].send(["type": "fill"], to: onA) }
            await #expect {
                try await layers[0].send(["type": "overflow"], to: onA)
            } throws: { error in
                (error as? ChannelLayerError)?.code == .channelFull
            }
        }
    }

    @Test func aConsumerThatDoesNotReadCostsBoundedMemoryAndDropsAreCounted() async throws {
        let server = try await RedisServer.start()
        try await withRedisLayers([server.layerConfiguration(nodeID: "node-a"), server.layerConfiguration(nodeID: "node-b")]) { layers in
            let idle = try await layers[1].newChannel()
            try await layers[1].groupAdd("busy", channel: idle)
            for index in 0..<250 { try await layers[0].groupSend(["type": "n", "i": .int(Int64(index))], to: "busy") }
            let settled = await eventually { layers[1].statistics.deliveries + layers[1].statistics.dropped == 250 }
            #expect(settled)
            #expect(layers[1].statistics.deliveries == 100)
            #expect(layers[1].statistics.dropped == 150)
            #expect(try await layers[1].receive(from: idle)["i"] == 0)
        }
    }

    @Test func invalidInputFailsClearly() async throws {
        let server = try await RedisServer.start()
        try await withRedisLayers([server.layerConfiguration(nodeID: "node-a")]) { layers in
            let layer = layers[0]
            await #expect {
                try await layer.groupSend(["type": "x"], to: "no spaces allowed")
            } throws: { error in
                (error as? ChannelLayerError)?.message.hasPrefix("Group name must be a valid unicode string") == true
            }
            await #expect {
                try await layer.groupAdd("room", channel: "asgispecific.notmine")
            } throws: { error in
                (error as? ChannelLayerError)?.code == .notLocal
            }
            await #expect {
                try await layer.send(["no": "type"], to: "asgispecific.x")
            } throws: { error in
                (error as? ChannelLayerError)?.code == .invalidMessage
            }
            // A payload that is not msgpack is dropped and counted, and later messages still flow.
            let channel = try await layer.newChannel()
            try await layer.groupAdd("room", channel: channel)
            let inspector = try await server.inspector()
            try await inspector.send("PUBLISH", "asgi__group__room", .bytes([0xc1, 0xff]))
            try await layer.groupSend(["type": "fine"], to: "room")
            #expect(try await layer.receive(from: channel).type == "fine")
            #expect(layer.statistics.undecodable == 1)
        }
    }

    @Test func subscriptionsComeBackAfterRedisRestartsAndTheOutageIsCounted() async throws {
        let server = try await RedisServer.start()
        try await withRedisLayers([server.layerConfiguration(nodeID: "node-a")]) { layers in
            let layer = layers[0]
            let channel = try await layer.newChannel()
            try await layer.groupAdd("survivors", channel: channel)
            server.kill()
            #expect(await eventually { layer.statistics.connectionLosses == 1 })
            try await server.restart()
            #expect(await eventually { layer.statistics.reconnections == 1 })
            #expect(layer.isConnected)
            // The command connection reconnects on the next send (within its backoff).
            let sent = await eventually {
                (try? await layer.groupSend(["type": "after.restart"], to: "survivors")) != nil
            }
            #expect(sent)
            #expect(try await layer.receive(from: channel).type == "after.restart")
        }
    }

    @Test func wrongPasswordStopsTheLayerWithOneClearError() async throws {
        let server = try await RedisServer.start(password: "right")
        var configuration = RedisPubSubChannelLayer.Configuration(hosts: [try RedisConfiguration(url: "redis://:wrong@127.0.0.1:\(server.port)")])
        configuration.nodeID = "node-a"
        let layer = try RedisPubSubChannelLayer(configuration: configuration)
        await #expect {
            try await layer.run()
        } throws: { error in
            guard let error = error as? ChannelLayerError else { return false }
            return error.code == .unavailable && (error.underlying as? RedisError)?.code == .authenticationFailed
        }
    }

    @Test func shardsOverTwoRedisHostsLikeChannelsRedis() async throws {
        let first = try await RedisServer.start()
        let second = try await RedisServer.start()
        func configuration(_ node: String) -> RedisPubSubChannelLayer.Configuration {
            var configuration = RedisPubSubChannelLayer.Configuration(hosts: [first.configuration(), second.configuration()])
            configuration.nodeID = node
            return configuration
        }
        let inspectors = [try await first.inspector(), try await second.inspector()]
        try await withRedisLayers([configuration("node-a"), configuration("node-b")]) { layers in
            for group in ["chat_lobby", "chat_other", "g1", "g2", "g3"] {
                let channel = try await layers[1].newChannel()
                try await layers[1].groupAdd(group, channel: channel)
                let owner = ShardRing.index(of: "asgi__group__\(group)", hostCount: 2)
                #expect(try await numberOfSubscribers(inspectors[owner], "asgi__group__\(group)") == 1)
                #expect(try await numberOfSubscribers(inspectors[1 - owner], "asgi__group__\(group)") == 0)
                try await layers[0].groupSend(["type": "g", "group": .string(group)], to: group)
                #expect(try await layers[1].receive(from: channel)["group"] == .string(group))
            }
        }
    }
}

extension Sequence where Element: Sendable {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var result: [T] = []
        for element in self { result.append(try await transform(element)) }
        return result
    }
}
