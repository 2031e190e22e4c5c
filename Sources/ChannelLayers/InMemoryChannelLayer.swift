import ChannelsProtocol
import Synchronization

/// The channel layer for a single process, like Django Channels' `InMemoryChannelLayer`.
///
/// Defaults match Django's: 100 messages per channel, messages expire after 60 s, group memberships after
/// 86,400 s. Nothing leaves the process.
public final class InMemoryChannelLayer: ChannelLayer {
    /// The layer's limits.
    public struct Configuration: Sendable, Hashable {
        /// Messages a channel holds before `send` throws `ChannelFull`.
        public var capacity: Int
        /// How long an unreceived message is kept.
        public var expiry: Duration
        /// How long a group membership lasts without being renewed by another `groupAdd`.
        public var groupExpiry: Duration

        public init(capacity: Int = 100, expiry: Duration = .seconds(60), groupExpiry: Duration = .seconds(86_400)) {
            self.capacity = capacity
            self.expiry = expiry
            self.groupExpiry = groupExpiry
        }
    }

    public let configuration: Configuration
    private let queues: ChannelQueues
    /// group -> channel -> when the membership expires.
    private let groups = Mutex<[String: [String: ContinuousClock.Instant]]>([:])
    private let counters = Mutex((sent: 0, groupSends: 0))

    public init(configuration: Configuration = Configuration()) {
        self.configuration = configuration
        self.queues = ChannelQueues(capacity: configuration.capacity, expiry: configuration.expiry)
    }

    public func newChannel(prefix: String) async throws(ChannelLayerError) -> String {
        let channel = ChannelName.random(prefix: prefix)
        queues.register(channel)
        return channel
    }

    public func send(_ message: Message, to channel: String) async throws(ChannelLayerError) {
        try LayerValidation.message(message)
        try LayerValidation.channel(channel)
        switch queues.put(message, on: channel, create: true) {
        case .delivered: counters.withLock { $0.sent += 1 }
        case .full: throw .channelFull(channel)
        case .noSuchChannel: break
        }
    }

    public func receive(from channel: String) async throws(ChannelLayerError) -> Message {
        try await receive(from: channel, upTo: 1)[0]
    }

    public func receive(from channel: String, upTo limit: Int) async throws(ChannelLayerError) -> [Message] {
        try LayerValidation.channel(channel, receive: true)
        return try await queues.receive(from: channel, upTo: max(1, limit)).get()
    }

    public func groupAdd(_ group: String, channel: String) async throws(ChannelLayerError) {
        try LayerValidation.membership(group, channel)
        let expiresAt = ContinuousClock.now + configuration.groupExpiry
        groups.withLock { $0[group, default: [:]][channel] = expiresAt }
    }

    public func groupDiscard(_ group: String, channel: String) async throws(ChannelLayerError) {
        try LayerValidation.membership(group, channel)
        groups.withLock { groups in
            groups[group]?[channel] = nil
            if groups[group]?.isEmpty == true { groups[group] = nil }
        }
    }

    public func groupSend(_ message: Message, to group: String) async throws(ChannelLayerError) {
        try LayerValidation.message(message)
        try LayerValidation.group(group)
        let now = ContinuousClock.now
        let members: [String] = groups.withLock { groups in
            guard var members = groups[group] else { return [] }
            members = members.filter { $0.value > now }
            groups[group] = members.isEmpty ? nil : members
            return Array(members.keys)
        }
        counters.withLock { $0.groupSends += 1 }
        // Members whose queue is full miss the message; ChannelQueues counts the drop.
        for member in members {
            _ = queues.put(message, on: member, create: true)
        }
    }

    public func deleteChannel(_ channel: String) async {
        queues.remove(channel)
        groups.withLock { groups in
            for group in Array(groups.keys) {
                groups[group]?[channel] = nil
                if groups[group]?.isEmpty == true { groups[group] = nil }
            }
        }
    }

    public func flush() async throws(ChannelLayerError) {
        queues.removeAll()
        groups.withLock { $0 = [:] }
    }

    public var statistics: ChannelLayerStatistics {
        var statistics = ChannelLayerStatistics()
        let queueCounters = queues.counters
        let (sent, groupSends) = counters.withLock { ($0.sent, $0.groupSends) }
        statistics.messagesSent = sent
        statistics.groupSends = groupSends
        statistics.deliveries = queueCounters.deliveries
        statistics.dropped = queueCounters.dropped
        statistics.expired = queueCounters.expired
        statistics.localChannels = queues.registeredCount
        statistics.localGroups = groups.withLock { $0.count }
        return statistics
    }

}
