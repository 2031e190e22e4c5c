import ChannelsProtocol
import Synchronization

/// The channel layer for a single process, like Django Channels' `InMemoryChannelLayer`.
///
/// Defaults match Django's: 100 messages per channel, messages expire after 60 s, group memberships after
/// 86,400 s. Nothing leaves the process. Channels made with an inbox (WebSocket connections) get their
/// messages pushed, with no queue and no expiry: a live connection does not silently leave its groups.
public final class InMemoryChannelLayer: InboxChannelLayer, PresenceChannelLayer, HistoryChannelLayer {
    /// The layer's limits.
    public struct Configuration: Sendable, Hashable {
        /// Messages a channel holds before `send` throws `ChannelFull`.
        public var capacity: Int
        /// How long an unreceived message is kept.
        public var expiry: Duration
        /// How long a group membership of a queued channel lasts without being renewed by another `groupAdd`.
        public var groupExpiry: Duration
        /// Which groups keep a history for recovering clients.
        public var history: HistoryConfiguration

        public init(
            capacity: Int = 100, expiry: Duration = .seconds(60), groupExpiry: Duration = .seconds(86_400),
            history: HistoryConfiguration = .none
        ) {
            self.capacity = capacity
            self.expiry = expiry
            self.groupExpiry = groupExpiry
            self.history = history
        }
    }

    private struct Groups {
        /// group -> queued channel -> when the membership expires.
        var queued: [String: [String: ContinuousClock.Instant]] = [:]
        /// group -> pushed members by event loop.
        var pushed = GroupIndex()
        var inboxes: [String: any ChannelInbox] = [:]
        var groupsOfInbox: [String: Set<String>] = [:]
        var sent = 0
        var groupSends = 0
        var histories: [String: HistoryRing] = [:]
        /// group -> channel -> who it is and when it joined, for members that joined with presence.
        var presence: [String: [String: (info: PresenceInfo, joinedAt: Double)]] = [:]
        /// This process's history epoch: it ends with the process (or a flush), so offsets never repeat in one.
        var epoch = String(ChannelName.random(prefix: "").prefix(8))
        /// group -> channel -> when it joined (Unix seconds), for listings.
        var joinedAt: [String: [String: Double]] = [:]

        mutating func forget(_ channel: String, in group: String) {
            joinedAt[group]?[channel] = nil
            if joinedAt[group]?.isEmpty == true { joinedAt[group] = nil }
        }

        /// A pushed member (a connection) is live while it is a member; a queued one until its membership expires.
        func isLive(_ channel: String, in group: String, now: ContinuousClock.Instant) -> Bool {
            if inboxes[channel] != nil { return groupsOfInbox[channel]?.contains(group) == true }
            guard let expiresAt = queued[group]?[channel] else { return false }
            return expiresAt > now
        }
    }

    public let configuration: Configuration
    private let queues: ChannelQueues
    private let dispatcher = InboxDispatcher()
    private let state = Mutex(Groups())
    /// Connections per user (`UserChannelLayer`).
    let users = Mutex<[String: Int]>([:])

    public init(configuration: Configuration = Configuration()) {
        self.configuration = configuration
        self.queues = ChannelQueues(capacity: configuration.capacity, expiry: configuration.expiry)
    }

    public func newChannel(prefix: String) async throws(ChannelLayerError) -> String {
        let channel = ChannelName.random(prefix: prefix)
        queues.register(channel)
        return channel
    }

    public func newChannel(prefix: String, inbox: any ChannelInbox) async throws(ChannelLayerError) -> String {
        let channel = ChannelName.random(prefix: prefix)
        state.withLock { $0.inboxes[channel] = inbox }
        return channel
    }

    public func send(_ message: Message, to channel: String) async throws(ChannelLayerError) {
        try LayerValidation.message(message)
        try LayerValidation.channel(channel)
        if let inbox = state.withLock({ $0.inboxes[channel] }) {
            await dispatcher.send(message, to: inbox)
            state.withLock { $0.sent += 1 }
            return
        }
        switch queues.put(message, on: channel, create: true) {
        case .delivered: state.withLock { $0.sent += 1 }
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
        let now = WallClock.now()
        state.withLock { state in
            if state.joinedAt[group]?[channel] == nil { state.joinedAt[group, default: [:]][channel] = now }
            if let inbox = state.inboxes[channel] {
                state.pushed.add(inbox, to: group)
                state.groupsOfInbox[channel, default: []].insert(group)
            } else {
                state.queued[group, default: [:]][channel] = expiresAt
            }
        }
    }

    public func groupAdd(_ group: String, channel: String, presence: PresenceInfo) async throws(ChannelLayerError) {
        try await groupAdd(group, channel: channel)
        let now = WallClock.now()
        let isNew = state.withLock { state in
            guard state.presence[group]?[channel] == nil else { return false }
            state.presence[group, default: [:]][channel] = (presence, now)
            return true
        }
        if isNew { await fanOut(PresenceEvent.message("join", channel: channel, presence: presence, node: nil, at: now), to: group, history: false, presence: true) }
    }

    public func presence(of group: String) async throws(ChannelLayerError) -> [PresenceMember] {
        try LayerValidation.group(group)
        return state.withLock { state in
            (state.presence[group] ?? [:]).map { channel, entry in
                PresenceMember(channel: channel, node: nil, user: entry.info.user, info: entry.info.info, joinedAt: entry.joinedAt)
            }
        }.sorted { ($0.joinedAt, $0.channel) < ($1.joinedAt, $1.channel) }
    }

    /// Members that joined with presence leave it: their groups hear about it.
    private func leavePresence(_ channel: String, groups: [String]) async {
        let now = WallClock.now()
        for group in groups {
            let left = state.withLock { state -> PresenceInfo? in
                guard let entry = state.presence[group]?.removeValue(forKey: channel) else { return nil }
                if state.presence[group]?.isEmpty == true { state.presence[group] = nil }
                return entry.info
            }
            if let left { await fanOut(PresenceEvent.message("leave", channel: channel, presence: left, node: nil, at: now), to: group, history: false, presence: true) }
        }
    }

    public func groupDiscard(_ group: String, channel: String) async throws(ChannelLayerError) {
        try LayerValidation.membership(group, channel)
        await leavePresence(channel, groups: [group])
        state.withLock { state in
            if let inbox = state.inboxes[channel] {
                state.pushed.remove(inbox, from: group)
                state.groupsOfInbox[channel]?.remove(group)
            }
            state.queued[group]?[channel] = nil
            if state.queued[group]?.isEmpty == true { state.queued[group] = nil }
            state.forget(channel, in: group)
        }
    }

    public func groupSend(_ message: Message, to group: String) async throws(ChannelLayerError) {
        _ = try await groupSendWithPosition(message, to: group)
    }

    public func groupSendWithPosition(_ message: Message, to group: String) async throws(ChannelLayerError) -> HistoryPosition? {
        try LayerValidation.message(message)
        try LayerValidation.group(group)
        return await fanOut(message, to: group, history: configuration.history.keepsHistory(group))
    }

    /// `presence`: a presence event, for the inboxes that take them (and every queue).
    @discardableResult
    private func fanOut(_ message: Message, to group: String, history keepsHistory: Bool, presence: Bool = false) async -> HistoryPosition? {
        // A publisher that outruns the event loops waits here instead of anyone losing the message.
        await dispatcher.waitForRoom()
        let now = ContinuousClock.now
        let (pushed, queued, position): ([GroupIndex.LoopMembers], [String], HistoryPosition?) = state.withLock { state in
            state.groupSends += 1
            var position: HistoryPosition?
            if keepsHistory {
                // Offsets are taken under the same lock as the members.
                let offset = state.histories[group, default: HistoryRing(now: now)].append(
                    message, size: configuration.history.size, maxBytes: configuration.history.maxBytes, now: now
                )
                position = HistoryPosition(offset: offset, epoch: state.epoch)
            }
            var queued: [String] = []
            if var members = state.queued[group] {
                members = members.filter { $0.value > now }
                state.queued[group] = members.isEmpty ? nil : members
                queued = Array(members.keys)
            }
            let members = presence ? state.pushed.presenceListeners(of: group) : state.pushed.members(of: group)
            if let position, !members.isEmpty {
                // Handed to the loops in offset order too: a recovering member takes a lower offset after a
                // higher one for a copy it already had, so two publishers must not pass each other here.
                dispatcher.dispatch(Delivery(message, group: group, position: position), to: members)
                return ([], queued, position)
            }
            return (members, queued, position)
        }
        if !pushed.isEmpty { dispatcher.dispatch(Delivery(message, group: group, position: position), to: pushed) }
        // Queued members whose queue is full miss the message; ChannelQueues counts the drop.
        for member in queued {
            _ = queues.put(message, on: member, create: true)
        }
        return position
    }

    public func keepsHistory(_ group: String) -> Bool {
        configuration.history.keepsHistory(group)
    }

    public func history(of group: String, after offset: Int64?, limit: Int) async throws(ChannelLayerError) -> GroupHistory? {
        try LayerValidation.group(group)
        guard keepsHistory(group) else { return nil }
        let now = ContinuousClock.now
        let ttl = configuration.history.ttl
        return state.withLock { state in
            guard var ring = state.histories[group] else {
                return GroupHistory(top: HistoryPosition(offset: 0, epoch: state.epoch), messages: [], oldest: nil)
            }
            ring.expire(ttl: ttl, now: now)
            state.histories[group] = ring
            let (messages, bytes) = ring.messages(after: offset, limit: limit)
            return GroupHistory(top: HistoryPosition(offset: ring.top, epoch: state.epoch), messages: messages, oldest: ring.oldest, bytes: bytes)
        }
    }

    public func deleteChannel(_ channel: String) async {
        let presentIn = state.withLock { state in state.presence.compactMap { $0.value[channel] != nil ? $0.key : nil } }
        await leavePresence(channel, groups: presentIn)
        queues.remove(channel)
        state.withLock { state in
            if let inbox = state.inboxes.removeValue(forKey: channel) {
                for group in state.groupsOfInbox.removeValue(forKey: channel) ?? [] {
                    state.pushed.remove(inbox, from: group)
                    state.forget(channel, in: group)
                }
            }
            for group in Array(state.queued.keys) {
                state.queued[group]?[channel] = nil
                if state.queued[group]?.isEmpty == true { state.queued[group] = nil }
                state.forget(channel, in: group)
            }
        }
    }

    public func flush() async throws(ChannelLayerError) {
        queues.removeAll()
        state.withLock { state in
            state.queued = [:]
            state.histories = [:]
            state.presence = [:]
            state.epoch = String(ChannelName.random(prefix: "").prefix(8))
            state.pushed.removeAll()
            state.groupsOfInbox = [:]
            state.joinedAt = [:]
        }
    }

    public var statistics: ChannelLayerStatistics {
        var statistics = ChannelLayerStatistics()
        let queueCounters = queues.counters
        state.withLock { state in
            statistics.messagesSent = state.sent
            statistics.groupSends = state.groupSends
            statistics.localGroups = Set(state.queued.keys).union(state.groupsOfInbox.values.joined()).count
            statistics.localChannels = state.inboxes.count
        }
        statistics.deliveries = queueCounters.deliveries + dispatcher.deliveries
        statistics.dropped = queueCounters.dropped
        statistics.expired = queueCounters.expired
        statistics.localChannels += queues.registeredCount
        return statistics
    }
}

/// The in-memory layer lists its own groups and members: one process is the whole "cluster" it knows.
extension InMemoryChannelLayer: ClusterDirectory {
    public var coversCluster: Bool { false }

    public func groups(matching pattern: String) async throws(ChannelLayerError) -> [DirectoryGroup] {
        let now = ContinuousClock.now
        return state.withLock { state in
            state.joinedAt.compactMap { group, members -> DirectoryGroup? in
                guard Glob.matches(pattern, name: group) else { return nil }
                let live = members.keys.filter { state.isLive($0, in: group, now: now) }.count
                return live == 0 ? nil : DirectoryGroup(name: group, members: live, nodes: [])
            }
        }.sorted { $0.name < $1.name }
    }

    public func members(of group: String) async throws(ChannelLayerError) -> [DirectoryMember] {
        try LayerValidation.group(group)
        let now = ContinuousClock.now
        return state.withLock { state in
            (state.joinedAt[group] ?? [:]).compactMap { channel, joinedAt -> DirectoryMember? in
                guard state.isLive(channel, in: group, now: now) else { return nil }
                let presence = state.presence[group]?[channel]
                return DirectoryMember(
                    channel: channel, node: nil, joinedAt: joinedAt, user: presence?.info.user, info: presence?.info.info, present: presence != nil
                )
            }
        }.sorted { ($0.joinedAt, $0.channel) < ($1.joinedAt, $1.channel) }
    }

    public func nodes() async throws(ChannelLayerError) -> [DirectoryNode] { [] }

    public func backendInfo() async throws(ChannelLayerError) -> [String: String] { [:] }
}

// MARK: - Users: one process is the whole cluster

extension InMemoryChannelLayer: UserChannelLayer {
    public func userConnected(_ user: String, limit: Int) async throws(ChannelLayerError) -> UserAdmission {
        users.withLock { users in
            let count = users[user, default: 0]
            if limit > 0, count >= limit { return .refused(connections: count) }
            users[user] = count + 1
            return .admitted(connections: count + 1)
        }
    }

    public func userDisconnected(_ user: String) {
        users.withLock { users in
            users[user, default: 0] -= 1
            if users[user]! <= 0 { users[user] = nil }
        }
    }
}
