import ChannelLayers
import ChannelsProtocol
import HiredisClient
import Synchronization

extension RedisCoreChannelLayer: PipelinedGroupSendLayer {
    /// Queues Django's two steps of `group_send` on the live connection without waiting: the group's members are
    /// read, and their reply, in the order replies come, queues the group_send script on the same connection.
    /// So the scripts run in the order the sends were started, as one connection's replies keep it.
    ///
    /// Nil (send it with ``groupSend(_:to:)``) while the connection is reconnecting, and with several hosts,
    /// whose queues and groups live on different connections that keep no common order.
    public func startGroupSend(_ message: Message, to group: String) throws(ChannelLayerError) -> GroupSendReceipt? {
        try Self.checkGroupSend(message, to: group)
        guard clients.count == 1, let connection = clients[0].liveConnection else { return nil }
        let key = CoreWire.groupKey(prefix: configuration.prefix, group: group)
        let now = WallClock.now()
        let receipt = GroupSendReceipt()
        let commands = membersCommands(key: key, now: now)
        // The expiry's reply says nothing the listing's does not: an error there fails the listing too.
        guard connection.enqueue(commands[0], onReply: { _ in }) == nil else { return nil }
        let failure = connection.enqueue(commands[1]) { [self] result in
            guard let listing = receipt.failUnlessTaken(result, command: "ZRANGE", doing: "reading the members of \(group)") else { return }
            // One host: at most one script call.
            guard let write = queueWrites(of: message, to: group, members: listing.array ?? [], now: now).first else {
                state.withLock { $0.groupSends += 1 }
                receipt.complete(nil)
                return
            }
            for command in write.cleanup { _ = connection.enqueue(command, onReply: { _ in }) }
            let notQueued = CoreWire.groupSend.enqueue(write.arguments, on: connection) { [self] result in
                guard let reply = receipt.failUnlessTaken(result, command: "EVALSHA", doing: "sending to the members of \(group)") else { return }
                noteFull(Int(reply.integer ?? 0), group: group)
                state.withLock { $0.groupSends += 1 }
                receipt.complete(nil)
            }
            if let notQueued { receipt.complete(ChannelLayerError(notQueued, doing: "sending to the members of \(group)")) }
        }
        // Not queued (the connection closed just now): nothing but the expiry was sent, so the caller's own send
        // repeats nothing that counts.
        if failure != nil { return nil }
        return receipt
    }
}
