import ChannelLayers
import ChannelsProtocol
import Synchronization

/// A Redis layer's side in this process, the same for both Redis layers: its channels (pushed inboxes and
/// `receive()` queues), their group memberships, and delivery to them.
final class LocalChannels: Sendable {
    let queues: ChannelQueues
    let dispatcher = InboxDispatcher()
    private let membership = Mutex(LocalMembership())

    init(capacity: Int, expiry: Duration) {
        queues = ChannelQueues(capacity: capacity, expiry: expiry)
    }

    /// Runs `body` with the memberships locked.
    func withMembership<T>(_ body: (inout LocalMembership) -> T) -> T {
        membership.withLock { body(&$0) }
    }

    /// The inbox of a pushed channel of this process.
    func inbox(of channel: String) -> (any ChannelInbox)? { membership.withLock { $0.inboxes[channel] } }

    /// Hands a message to a channel of this process: pushed to its inbox (waiting while the event loops
    /// are behind) or put on its queue. Returns `false` when the channel is not this process's.
    /// - Throws: ``ChannelLayerError/Code/channelFull`` when its queue holds its capacity.
    func deliver(_ message: Message, to channel: String) async throws(ChannelLayerError) -> Bool {
        if let inbox = inbox(of: channel) {
            await dispatcher.send(message, to: inbox)
            return true
        }
        guard queues.isRegistered(channel) else { return false }
        switch queues.put(message, on: channel, create: false) {
        case .delivered: return true
        case .full: throw .channelFull(channel)
        case .noSuchChannel: return false  // deleted meanwhile
        }
    }

    /// Throws Django's error unless `channel` is a channel of this process.
    func requireLocal(_ channel: String) throws(ChannelLayerError) {
        guard queues.isRegistered(channel) || inbox(of: channel) != nil else {
            throw ChannelLayerError(
                .notLocal,
                "You can only call groupAdd() on channels that exist in-process; use the consumer's own channel name (got \(channel))"
            )
        }
    }

    /// Forgets a channel's inbox or queue (its memberships are left to the caller).
    func remove(_ channel: String) {
        _ = membership.withLock { $0.removeInbox(of: channel) }
        queues.remove(channel)
    }

    /// Channels of this process: queued ones (`receive()`) and pushed ones (inboxes, WebSocket connections).
    var channelCount: Int { queues.registeredCount + membership.withLock { $0.inboxes.count } }

    /// Adds what happened here to a layer's statistics: deliveries, drops, expiries, channels and groups.
    func count(into statistics: inout ChannelLayerStatistics) {
        let counters = queues.counters
        statistics.deliveries += counters.deliveries + dispatcher.deliveries
        statistics.dropped += counters.dropped
        statistics.expired += counters.expired
        statistics.localChannels = channelCount
        statistics.localGroups = membership.withLock { $0.groups.count }
    }

    /// What the registry's heartbeat writes for this process.
    func registrySnapshot(listed isListed: (String) -> Bool, connections: Int?) -> MembershipRegistry.Snapshot {
        let members = membership.withLock { $0.registryMembers(listed: isListed) }
        let channels = channelCount
        return MembershipRegistry.Snapshot(members: members, channels: channels, connections: connections ?? channels)
    }
}
