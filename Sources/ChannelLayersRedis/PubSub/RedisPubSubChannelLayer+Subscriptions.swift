import ChannelLayers
import ChannelsProtocol
import HiredisClient
import Logging
import NIOCore
import NIOPosix
import Synchronization

extension RedisPubSubChannelLayer {
    /// Routes the messages of one read from a host to local inboxes and queues, decoding each payload once.
    /// Runs on the subscriber's event loop. Returns `false` when the inboxes' event loops are behind: the
    /// subscriber stops reading (Redis buffers for it) until `resume` is called, and nothing is dropped.
    func deliver(_ messages: [RedisPubSubMessage], resume: @escaping @Sendable () -> Void) -> Bool {
        for message in messages {
            if let group = group(in: message.channel, after: groupPrefix) {
                let (pushed, queued) = local.withMembership { ($0.pushed.members(of: group), $0.queuedMembers[group]) }
                guard !pushed.isEmpty || queued != nil, let decoded = decode(message) else { continue }
                let (stripped, claimed) = Self.stripHistoryKeys(decoded)
                guard keepsHistory(group) else {
                    if claimed != nil { state.withLock { $0.untrustedOffsets += 1 } }
                    deliver(stripped, position: nil, group: group, pushed: pushed, queued: queued)
                    continue
                }
                let item = HistoryPositionCheck.Item(message: stripped, claimed: claimed, payload: message.payload)
                // Handed on under the check's lock, like the messages a check releases: group order holds.
                let check = positionCheck.withLock { check -> (position: HistoryPosition, payload: [UInt8])? in
                    switch check.admit(item, group: group) {
                    case .deliver(let message, let position):
                        deliver(message, position: position, group: group, pushed: pushed, queued: queued)
                        return nil
                    case .held:
                        return nil
                    case .verify(let position, let payload):
                        return (position, payload)
                    }
                }
                if let check { verify(check.position, payload: check.payload, group: group) }
            } else if let group = group(in: message.channel, after: presencePrefix) {
                let pushed = local.withMembership { $0.pushed.presenceListeners(of: group) }
                guard !pushed.isEmpty, let decoded = decode(message) else { continue }
                local.dispatcher.dispatch(Delivery(decoded, group: group), to: pushed)
            } else if let inbox = local.inbox(of: message.channel) {
                if let decoded = decode(message) { local.dispatcher.dispatch(Delivery(decoded), to: inbox) }
            } else if local.queues.isRegistered(message.channel), let decoded = decode(message) {
                _ = local.queues.put(decoded, on: message.channel, create: false)
            }
        }
        if local.dispatcher.hasRoom { return true }
        local.dispatcher.whenDrained(resume)
        return false
    }

    func deliver(
        _ message: Message, position: HistoryPosition?, group: String, pushed: [GroupIndex.LoopMembers], queued: Set<String>?
    ) {
        if !pushed.isEmpty { local.dispatcher.dispatch(Delivery(message, group: group, position: position), to: pushed) }
        if let queued { local.queues.putMany(message, on: queued) }
    }

    func decode(_ message: RedisPubSubMessage) -> Message? {
        do {
            return try envelope.open(message.payload).message
        } catch {
            state.withLock { $0.undecodable += 1 }
            switch error {
            case .undecryptable(let reason):
                warnings.warn(
                    "dropped a message no encryption key of this node decrypts; check CHANNELS_SYMMETRIC_ENCRYPTION_KEYS against Django's symmetric_encryption_keys",
                    metadata: ["channel": "\(message.channel)", "reason": "\(reason)"]
                )
            case .undecodable(let reason):
                warnings.warn(
                    "dropped a message that is not a msgpack channel layer message",
                    metadata: ["channel": "\(message.channel)", "error": "\(reason)", "bytes": "\(message.payload.count)"]
                )
            }
            return nil
        }
    }

    func watch(_ subscriber: any LayerSubscriber, shard index: Int) async {
        for await event in subscriber.layerEvents() {
            switch event {
            case .lost(let error, let channels):
                state.withLock { $0.connectionLosses += 1 }
                tellInboxesOfLoss(onShard: index, channels: channels.map(Set.init))
                logger.warning("lost a Redis pub/sub subscription; messages sent until it is back are lost", metadata: ["error": "\(error.message)"])
            case .restored(let channels):
                state.withLock { $0.resubscriptions += 1 }
                logger.info("Redis is back; subscriptions restored", metadata: ["channels": "\(channels)"])
                // Redis may have lost the registry with its data: write it again now, not at the next beat.
                if let registry { registry.enqueue(.heartbeat(snapshot())) }
            case .unreachable(let error, let attempt):
                if attempt == 1 || attempt % 10 == 0 {
                    logger.warning("cannot reach Redis", metadata: ["error": "\(error.message)", "attempt": "\(attempt)"])
                }
            }
        }
    }

    /// Messages published while a subscription is down never reach this node: tell the inboxes whose
    /// channel or groups were on it (`channels`, or everything of the shard), so their clients know and can
    /// recover from history.
    func tellInboxesOfLoss(onShard index: Int, channels: Set<String>?) {
        func lost(_ name: String) -> Bool {
            if let channels { return channels.contains(name) }
            return ShardRing.index(of: name, hostCount: shards.count) == index
        }
        let affected = local.withMembership { membership in
            membership.inboxes.filter { channel, _ in
                lost(channel) || membership.groups(of: channel).contains { lost(groupChannel($0)) }
            }.map(\.value)
        }
        // Offsets after the gap are checked against the history again.
        positionCheck.withLock { $0.forgetAll() }
        let reason = "this node lost its Redis subscription; messages sent until it is back are not delivered"
        for inbox in affected {
            inbox.eventLoop.execute { inbox.messagesLost(reason: reason) }
        }
    }
}
