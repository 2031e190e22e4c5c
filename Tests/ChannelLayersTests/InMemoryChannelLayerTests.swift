import ChannelLayers
import ChannelsProtocol
import NIOCore
import NIOPosix
import Synchronization
import Testing

/// Records the history offsets of what it gets, on a real event loop.
final class OffsetInbox: ChannelInbox {
    let eventLoop: any EventLoop
    let offsets = Mutex<[Int64]>([])

    init(eventLoop: any EventLoop) { self.eventLoop = eventLoop }

    func receive(_ delivery: Delivery) -> Bool {
        offsets.withLock { $0.append(delivery.position?.offset ?? -1) }
        return false
    }

    func endOfBatch() {}
    func messagesLost(reason: String) {}
}

@Suite struct InMemoryChannelLayerTests {
    /// A recovering client drops an offset lower than one it had (a copy), so concurrent publishers of a
    /// history group must reach each member in offset order.
    @Test func concurrentPublishersOfAHistoryGroupReachMembersInOffsetOrder() async throws {
        let layer = InMemoryChannelLayer(configuration: .init(history: HistoryConfiguration(patterns: ["chat_*"])))
        let inboxes = MultiThreadedEventLoopGroup.singleton.makeIterator().map { OffsetInbox(eventLoop: $0) }
        for inbox in inboxes {
            let channel = try await layer.newChannel(prefix: "specific.", inbox: inbox)
            try await layer.groupAdd("chat_order", channel: channel)
        }
        await withTaskGroup(of: Void.self) { group in
            for publisher in 0..<4 {
                group.addTask {
                    for n in 0..<500 { try? await layer.groupSend(["type": "m", "n": .int(Int64(publisher * 1000 + n))], to: "chat_order") }
                }
            }
        }
        for inbox in inboxes {
            for _ in 0..<500 where inbox.offsets.withLock({ $0.count }) < 2000 { try await Task.sleep(for: .milliseconds(10)) }
            let offsets = inbox.offsets.withLock { $0 }
            #expect(offsets == Array(1...2000), "out of order at \(offsets.indices.dropFirst().first { offsets[$0] <= offsets[$0 - 1] } ?? -1)")
        }
    }

    let chat: Message = ["type": "chat.message", "message": "hi"]

    /// Joins and leaves with presence reach the inboxes that take presence events; group messages reach all.
    @Test func presenceEventsReachOnlyTheInboxesThatTakeThem() async throws {
        let layer = InMemoryChannelLayer()
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let listening = RecordingInbox(eventLoop: loop)
        let declining = RecordingInbox(eventLoop: loop, takesPresenceEvents: false)
        for inbox in [listening, declining] {
            try await layer.groupAdd("room", channel: try await layer.newChannel(prefix: "specific.", inbox: inbox))
        }
        let joining = try await layer.newChannel(prefix: "specific.", inbox: RecordingInbox(eventLoop: loop, takesPresenceEvents: false))
        try await layer.groupAdd("room", channel: joining, presence: PresenceInfo(user: "ann"))
        try await layer.groupSend(chat, to: "room")
        try await layer.groupDiscard("room", channel: joining)
        try await layer.groupSend(["type": "chat.message", "message": "after"], to: "room")
        func types(_ inbox: RecordingInbox) -> [String] {
            inbox.received.withLock { $0.map { [$0.type ?? "?", $0["event"]?.string, $0["message"]?.string].compactMap { $0 }.joined(separator: " ") } }
        }
        for _ in 0..<200 where types(listening).count < 4 || types(declining).count < 2 { try await Task.sleep(for: .milliseconds(10)) }
        #expect(types(listening) == ["channels.presence join", "chat.message hi", "channels.presence leave", "chat.message after"])
        #expect(types(declining) == ["chat.message hi", "chat.message after"])
        #expect(try await layer.presence(of: "room").isEmpty)
    }

    @Test func sendAndReceive() async throws {
        let layer = InMemoryChannelLayer()
        let channel = try await layer.newChannel()
        #expect(channel.hasPrefix("specific."))
        #expect(channel.count == "specific.".count + 32)
        try await layer.send(chat, to: channel)
        #expect(try await layer.receive(from: channel) == chat)
    }

    @Test func receiverWaitsForTheNextMessage() async throws {
        let layer = InMemoryChannelLayer()
        let channel = try await layer.newChannel()
        let received = Task { try await layer.receive(from: channel) }
        try await Task.sleep(for: .milliseconds(50))
        try await layer.send(chat, to: channel)
        #expect(try await received.value == chat)
    }

    @Test func sendToAFullChannelThrowsChannelFull() async throws {
        let layer = InMemoryChannelLayer()
        let channel = try await layer.newChannel()
        for index in 0..<100 { try await layer.send(["type": "n", "i": .int(Int64(index))], to: channel) }
        await #expect {
            try await layer.send(chat, to: channel)
        } throws: { error in
            (error as? ChannelLayerError)?.code == .channelFull
        }
        // Nothing was lost: the first 100 are there, in order.
        #expect(try await layer.receive(from: channel)["i"] == 0)
    }

    @Test func groupSendNeverThrowsChannelFullAndCountsDrops() async throws {
        let layer = InMemoryChannelLayer(configuration: .init(capacity: 5))
        let slow = try await layer.newChannel()
        let fast = try await layer.newChannel()
        try await layer.groupAdd("room", channel: slow)
        try await layer.groupAdd("room", channel: fast)
        for index in 0..<8 {
            try await layer.groupSend(["type": "n", "i": .int(Int64(index))], to: "room")
            if index < 5 { _ = try await layer.receive(from: fast) }
        }
        #expect(layer.statistics.dropped == 3)
        #expect(layer.statistics.groupSends == 8)
        for index in 0..<5 { #expect(try await layer.receive(from: slow)["i"] == .int(Int64(index))) }
        for index in 5..<8 { #expect(try await layer.receive(from: fast)["i"] == .int(Int64(index))) }
    }

    @Test func groupDiscardStopsDelivery() async throws {
        let layer = InMemoryChannelLayer()
        let a = try await layer.newChannel()
        let b = try await layer.newChannel()
        try await layer.groupAdd("room", channel: a)
        try await layer.groupAdd("room", channel: b)
        try await layer.groupDiscard("room", channel: a)
        try await layer.groupDiscard("room", channel: a)  // not a member any more: no error
        try await layer.groupSend(chat, to: "room")
        #expect(try await layer.receive(from: b) == chat)
        #expect(layer.statistics.deliveries == 1)
    }

    @Test func messagesAndMembershipsExpire() async throws {
        let layer = InMemoryChannelLayer(configuration: .init(expiry: .milliseconds(100), groupExpiry: .milliseconds(100)))
        let channel = try await layer.newChannel()
        try await layer.send(["type": "old"], to: channel)
        try await layer.groupAdd("room", channel: channel)
        try await Task.sleep(for: .milliseconds(150))
        try await layer.groupSend(["type": "group.late"], to: "room")
        try await layer.send(["type": "new"], to: channel)
        #expect(try await layer.receive(from: channel).type == "new")
        #expect(layer.statistics.expired == 1)
        #expect(layer.statistics.localGroups == 0)
    }

    @Test func invalidNamesGetDjangosText() async throws {
        let layer = InMemoryChannelLayer()
        let channel = try await layer.newChannel()
        await #expect {
            try await layer.groupAdd("bad group!", channel: channel)
        } throws: { error in
            (error as? ChannelLayerError)?.message
                == "Group name must be a valid unicode string with length < 100 containing only ASCII alphanumerics, hyphens, underscores, or periods."
        }
        await #expect {
            try await layer.send(chat, to: "no spaces")
        } throws: { error in
            (error as? ChannelLayerError)?.code == .invalidName
        }
        await #expect {
            try await layer.groupSend(["message": "no type"], to: "room")
        } throws: { error in
            (error as? ChannelLayerError)?.code == .invalidMessage
        }
    }

    @Test func deleteChannelEndsWaitingReceiversAndMemberships() async throws {
        let layer = InMemoryChannelLayer()
        let channel = try await layer.newChannel()
        try await layer.groupAdd("room", channel: channel)
        let waiting = Task { try await layer.receive(from: channel) }
        try await Task.sleep(for: .milliseconds(50))
        await layer.deleteChannel(channel)
        await #expect {
            try await waiting.value
        } throws: { error in
            (error as? ChannelLayerError)?.code == .closed
        }
        #expect(layer.statistics.localGroups == 0)
        #expect(layer.statistics.localChannels == 0)
    }

    @Test func cancellingReceiveThrowsCancelled() async throws {
        let layer = InMemoryChannelLayer()
        let channel = try await layer.newChannel()
        let waiting = Task { try await layer.receive(from: channel) }
        try await Task.sleep(for: .milliseconds(50))
        waiting.cancel()
        await #expect {
            try await waiting.value
        } throws: { error in
            (error as? ChannelLayerError)?.code == .cancelled
        }
        // The channel still works for the next receiver.
        try await layer.send(chat, to: channel)
        #expect(try await layer.receive(from: channel) == chat)
    }

    @Test func flushEmptiesEverything() async throws {
        let layer = InMemoryChannelLayer()
        let channel = try await layer.newChannel()
        try await layer.send(chat, to: channel)
        try await layer.groupAdd("room", channel: channel)
        try await layer.flush()
        #expect(layer.statistics.localChannels == 0)
        #expect(layer.statistics.localGroups == 0)
    }
}
