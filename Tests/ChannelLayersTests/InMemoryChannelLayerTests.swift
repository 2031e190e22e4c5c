import ChannelLayers
import ChannelsProtocol
import Testing

@Suite struct InMemoryChannelLayerTests {
    let chat: Message = ["type": "chat.message", "message": "hi"]

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
