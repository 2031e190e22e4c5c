import ChannelLayers
import ChannelsProtocol
import HiredisClient
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// A channel layer over Redis pub/sub that speaks channels_redis' `RedisPubSubChannelLayer` wire format,
/// so Swift nodes and Django processes on the same Redis share groups and channels.
///
/// - A group is the Redis channel `{prefix}__group__{group}`; `groupSend` is exactly one `PUBLISH` of the
///   msgpack-encoded message, whatever the group size.
/// - A process subscribes to a group's channel while it has local members and unsubscribes when the last
///   one leaves. A message from Redis is decoded once and put on every local member's queue.
/// - Direct channels are `{prefix}specific.{32 hex}`; `send` to one of this process's channels skips Redis.
/// - Several Redis hosts are sharded by channel name with channels_redis' CRC-32 ring.
/// - Each local queue holds at most `capacity` messages: a consumer that does not read costs bounded memory,
///   and what it misses is counted in ``statistics``.
/// - After a Redis restart every subscription is restored; losses and restorations are counted.
/// - On Redis Cluster (``Configuration/cluster``) groups and channels travel over sharded pub/sub
///   (`SPUBLISH`/`SSUBSCRIBE` on each slot's primary, following failovers and resharding), and a group's
///   channel carries a hash tag, `{prefix}__group__{<group>}`, so it shares a slot with its history keys.
/// - Group memberships are recorded for operators (see ``MembershipRegistry`` keys in the README).
///
/// Call ``run()`` in a task for as long as the layer is used; cancel it to shut down.
public final class RedisPubSubChannelLayer: InboxChannelLayer, PresenceChannelLayer, HistoryChannelLayer, UserChannelLayer, WebhookChannelLayer {

    struct State {
        var messagesSent = 0
        var groupSends = 0
        var undecodable = 0
        var connectionLosses = 0
        var resubscriptions = 0
        var historyBytesWritten = 0
        var historyBytesRead = 0
        var untrustedOffsets = 0
    }

    public let configuration: Configuration
    let shards: [Shard]
    let local: LocalChannels
    let reconciler: SubscriptionReconciler
    let registry: MembershipRegistry?
    /// Users, group occupancy and presence shared by the cluster (with the registry).
    let cluster: ClusterState?
    let state = Mutex(State())
    let positionCheck = Mutex(HistoryPositionCheck())
    let connectionCount: @Sendable () -> Int?
    let logger: Logger
    let warnings: WarningLimiter
    let groupPrefix: String
    let envelope: MessageEnvelope
    /// Whether this is Redis Cluster with sharded pub/sub.
    let clustered: Bool
    let publishCommand: String
    /// Presence events travel on a channel of their own, `{prefix}__presence__{group}`: Django consumers in
    /// the same group would fail on a message type they have no handler for.
    let presencePrefix: String

    /// Creates the layer; nothing connects until ``run()``.
    /// - Parameter connectionCount: what the registry reports as this node's connection count
    ///   (by default, its number of local channels).
    public init(
        configuration: Configuration,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "ChannelLayers.redis"),
        connectionCount: @escaping @Sendable () -> Int? = { nil }
    ) throws(ChannelLayerError) {
        guard !configuration.hosts.isEmpty || !configuration.cluster.isEmpty else {
            throw ChannelLayerError(.unavailable, "the Redis layer needs at least one Redis URL or Redis Cluster seed")
        }
        try RedisLayerChecks.nodeID(configuration.nodeID)
        if !configuration.encryptionKeys.isEmpty, !configuration.history.patterns.isEmpty {
            throw ChannelLayerError(
                .invalidMessage,
                "encrypted messages cannot keep a history (the history script numbers readable payloads in Redis); turn history off (--history none) or encryption"
            )
        }
        try RedisLayerChecks.encryptionKeys(configuration.encryptionKeys)
        self.configuration = configuration
        self.logger = logger
        self.warnings = WarningLimiter(logger: logger)
        self.connectionCount = connectionCount
        self.envelope = MessageEnvelope(randomPrefixLength: 0, encryptionKeys: configuration.encryptionKeys, ttl: nil)
        self.groupPrefix = "\(configuration.prefix)__group__"
        self.presencePrefix = "\(configuration.prefix)__presence__"
        self.clustered = !configuration.cluster.isEmpty
        self.publishCommand = clustered ? "SPUBLISH" : "PUBLISH"
        // The subscribers hand their messages to the layer on their event loop, set once `self` exists.
        let router = MessageRouter()
        let shards: [Shard]
        if clustered {
            var seeds = configuration.cluster
            for index in seeds.indices where seeds[index].clientName == nil { seeds[index].clientName = "channels-\(configuration.nodeID)" }
            let client: RedisClusterClient
            do {
                client = try RedisClusterClient(seeds: seeds, eventLoopGroup: eventLoopGroup, logger: logger)
            } catch {
                throw ChannelLayerError(error, doing: "reading the Redis Cluster seeds")
            }
            // A node answers its clients now: joins fail at once while a shard's primary is unreachable.
            let subscriber = RedisClusterSubscriber(client: client, eventLoopGroup: eventLoopGroup, logger: logger, failsWhileUnreachable: true) {
                messages in router.route(messages)
            }
            shards = [Shard(client: client, subscriber: subscriber, close: { await client.close() })]
        } else {
            shards = configuration.hosts.map { host in
                var host = host
                if host.clientName == nil { host.clientName = "channels-\(configuration.nodeID)" }
                let client = RedisClient(configuration: host, reconnectPolicy: configuration.reconnectPolicy, eventLoopGroup: eventLoopGroup, logger: logger)
                return Shard(
                    client: client,
                    subscriber: RedisSubscriber(
                        configuration: host, reconnectPolicy: configuration.reconnectPolicy, eventLoopGroup: eventLoopGroup, logger: logger,
                        failsWhileUnreachable: true, onMessages: { messages in router.route(messages) }
                    ),
                    close: { await client.close() }
                )
            }
        }
        self.shards = shards
        self.local = LocalChannels(capacity: configuration.capacity, expiry: configuration.expiry)
        self.reconciler = SubscriptionReconciler(
            subscribe: { name throws(RedisError) in
                try await shards[ShardRing.index(of: name, hostCount: shards.count)].subscriber.add([name])
            },
            unsubscribe: { name throws(RedisError) in
                try await shards[ShardRing.index(of: name, hostCount: shards.count)].subscriber.remove([name])
            }
        )
        self.registry =
            configuration.registry
            ? MembershipRegistry(
                client: shards[0].client, prefix: configuration.prefix, nodeID: configuration.nodeID,
                ttl: configuration.registryTTL, authFingerprint: configuration.authFingerprint, logger: logger
            ) : nil
        let announcer = ReapAnnouncer()
        self.cluster =
            configuration.registry
            ? ClusterState(
                client: shards[0].client, prefix: configuration.prefix, nodeID: configuration.nodeID, lease: configuration.registryTTL,
                maxEvents: configuration.maxWebhookEvents, logger: logger, onReaped: { node, members in await announcer.announce(node, members) }
            ) : nil
        announcer.layer.withLock { $0 = self }
        router.layer.withLock { $0 = self }
        router.subscribers.withLock { $0 = shards.map(\.subscriber) }
    }

    /// One host of channels_redis' ring, or the whole cluster.
    struct Shard: Sendable {
        let client: any RedisCommandSender
        let subscriber: any LayerSubscriber
        let close: @Sendable () async -> Void
    }

    /// Lets the subscribers, made before the layer, reach it; they live and end with the layer.
    final class MessageRouter: Sendable {
        let layer = Mutex<RedisPubSubChannelLayer?>(nil)
        let subscribers = Mutex<[any LayerSubscriber]>([])

        func route(_ messages: [RedisPubSubMessage]) -> Bool {
            guard let layer = layer.withLock({ $0 }) else { return true }
            return layer.deliver(messages, resume: { [self] in
                // Resumes every subscriber: cheap, and a paused one is found without bookkeeping.
                for subscriber in subscribers.withLock({ $0 }) { subscriber.resumeReading() }
            })
        }
    }

    // MARK: - Running

    /// Connects to every host and keeps subscriptions, deliveries and the registry going until cancelled.
    ///
    /// Returns normally when cancelled, after removing this node from the registry.
    /// - Throws: ``ChannelLayerError/Code/redis`` when Redis refuses the credentials: retrying cannot help.
    public func run() async throws(ChannelLayerError) {
        do {
            try await withThrowingDiscardingTaskGroup { group in
                for (index, shard) in shards.enumerated() {
                    group.addTask { try await shard.subscriber.run() }
                    group.addTask { await self.watch(shard.subscriber, shard: index) }
                }
                if let registry {
                    group.addTask { await registry.run() }
                    group.addTask { await registry.beat(every: self.configuration.heartbeatInterval) { self.snapshot() } }
                }
                if let cluster {
                    group.addTask { await cluster.run(heartbeat: self.configuration.heartbeatInterval, reapEvery: self.configuration.reapInterval) }
                }
            }
        } catch let error as RedisError {
            throw ChannelLayerError(error, doing: "connecting to Redis")
        } catch {
            throw ChannelLayerError(.unavailable, "the Redis layer stopped: \(error)")
        }
        if let registry {
            await registry.removeNow(groups: local.withMembership { Array($0.groups.keys) })
        }
        await cluster?.leave()
        for shard in shards { await shard.close() }
    }

    /// Whether every host's pub/sub connection is up.
    public var isConnected: Bool { shards.allSatisfy { $0.subscriber.isConnected } }

    // MARK: - ChannelLayer

    public func newChannel(prefix: String) async throws(ChannelLayerError) -> String {
        let channel = ChannelName.random(prefix: configuration.prefix + prefix)
        try LayerValidation.channel(channel)
        local.queues.register(channel)
        do {
            try await reconciler.want(channel)
        } catch {
            local.queues.remove(channel)
            reconciler.unwant(channel)
            throw error
        }
        return channel
    }

    public func newChannel(prefix: String, inbox: any ChannelInbox) async throws(ChannelLayerError) -> String {
        let channel = ChannelName.random(prefix: configuration.prefix + prefix)
        try LayerValidation.channel(channel)
        local.withMembership { $0.addInbox(inbox, for: channel) }
        do {
            try await reconciler.want(channel)
        } catch {
            local.remove(channel)
            reconciler.unwant(channel)
            throw error
        }
        return channel
    }

    public func send(_ message: Message, to channel: String) async throws(ChannelLayerError) {
        try LayerValidation.channel(channel)
        try LayerValidation.message(message)
        if try await !local.deliver(message, to: channel) {
            try await publish(message, on: channel)
        }
        state.withLock { $0.messagesSent += 1 }
    }

    public func receive(from channel: String) async throws(ChannelLayerError) -> Message {
        try await receive(from: channel, upTo: 1)[0]
    }

    public func receive(from channel: String, upTo limit: Int) async throws(ChannelLayerError) -> [Message] {
        try LayerValidation.channel(channel, receive: true)
        if !local.queues.isRegistered(channel) {
            local.queues.register(channel)
            try await reconciler.want(channel)
        }
        return try await local.queues.receive(from: channel, upTo: max(1, limit)).get()
    }

    public func groupAdd(_ group: String, channel: String) async throws(ChannelLayerError) {
        try LayerValidation.membership(group, channel)
        try local.requireLocal(channel)
        let joinedAt = WallClock.now()
        let (isNew, first, presence) = local.withMembership {
            let first = $0.groups[group] == nil
            return ($0.join(group, channel: channel, at: joinedAt), first, $0.presence(of: channel, in: group))
        }
        if first, isListed(group) { cluster?.groupOccupied(group) }
        if isNew, isListed(group) {
            let value = RegistryReader.value(joinedAt: joinedAt, presence: presence)
            registry?.enqueue(.join(group: group, channel: channel, value: value))
        }
        try await reconciler.want(groupChannel(group))
    }

    public func groupDiscard(_ group: String, channel: String) async throws(ChannelLayerError) {
        try LayerValidation.membership(group, channel)
        let left = leavePresence(channel, groups: [group])
        discard(group, channel: channel)
        await announce(left)
    }

    public func groupSend(_ message: Message, to group: String) async throws(ChannelLayerError) {
        _ = try await groupSendWithPosition(message, to: group)
    }

    public func groupSendWithPosition(_ message: Message, to group: String) async throws(ChannelLayerError) -> HistoryPosition? {
        try LayerValidation.group(group)
        try LayerValidation.message(message)
        // Offsets and epochs come from the history script only: a sender's own are never passed on.
        let message = Self.stripHistoryKeys(message).message
        var position: HistoryPosition?
        if configuration.history.keepsHistory(group) {
            position = try await publishWithHistory(message, group: group)
        } else {
            try await publish(message, on: groupChannel(group))
        }
        state.withLock { $0.groupSends += 1 }
        return position
    }

    public func deleteChannel(_ channel: String) async {
        let groups = local.withMembership { $0.groups(of: channel) }
        let left = leavePresence(channel, groups: groups)
        for group in groups { discard(group, channel: channel) }
        await announce(left)
        local.remove(channel)
        reconciler.unwant(channel)
    }

    public func flush() async throws(ChannelLayerError) {
        let groups = local.withMembership { membership in
            defer { membership.removeAllMemberships() }
            return Array(membership.groups.keys)
        }
        local.queues.removeAll()
        reconciler.reset()
        for shard in shards {
            let channels = shard.subscriber.channels
            if !channels.isEmpty {
                do {
                    try await shard.subscriber.remove(Array(channels))
                } catch {
                    throw ChannelLayerError(error, doing: "unsubscribing while flushing")
                }
            }
        }
        if let registry, !groups.isEmpty { registry.enqueue(.remove(groups: groups)) }
        for group in groups where isListed(group) { cluster?.groupEmptied(group) }
    }

    public var statistics: ChannelLayerStatistics {
        var statistics = ChannelLayerStatistics()
        state.withLock { state in
            statistics.messagesSent = state.messagesSent
            statistics.groupSends = state.groupSends
            statistics.undecodable = state.undecodable
            statistics.connectionLosses = state.connectionLosses
            statistics.reconnections = state.resubscriptions
            statistics.historyBytesWritten = state.historyBytesWritten
            statistics.historyBytesRead = state.historyBytesRead
            statistics.untrustedOffsets = state.untrustedOffsets
        }
        local.count(into: &statistics)
        return statistics
    }

    // MARK: - Internals

    func shard(for name: String) -> Shard {
        shards[ShardRing.index(of: name, hostCount: shards.count)]
    }

    /// A group's Redis channel: channels_redis' `asgi__group__chat`; on a cluster `asgi__group__{chat}`, in
    /// the slot of the group's history keys, so the history script publishes where it writes.
    func groupChannel(_ group: String) -> String {
        clustered ? "\(groupPrefix){\(group)}" : groupPrefix + group
    }

    func presenceChannel(_ group: String) -> String {
        clustered ? "\(presencePrefix){\(group)}" : presencePrefix + group
    }

    /// The group a Redis channel with `prefix` is for, or `nil` when it has another prefix.
    func group(in channel: String, after prefix: String) -> String? {
        guard channel.hasPrefix(prefix) else { return nil }
        let rest = channel.utf8.dropFirst(prefix.utf8.count)
        if clustered, rest.first == UInt8(ascii: "{"), rest.last == UInt8(ascii: "}") {
            return String(rest.dropFirst().dropLast())
        }
        return String(rest)
    }

    func publish(_ message: Message, on name: String) async throws(ChannelLayerError) {
        let payload = envelope.seal(message)
        do {
            _ = try await shard(for: name).client.send(RedisCommand(publishCommand, .string(name), .bytes(payload)))
        } catch {
            throw ChannelLayerError(error, doing: "publishing to \(name)")
        }
    }

    func discard(_ group: String, channel: String) {
        let (wasMember, groupEmpty) = local.withMembership { $0.leave(group, channel: channel) }
        guard wasMember else { return }
        if isListed(group) { registry?.enqueue(.leave(group: group, channel: channel)) }
        if groupEmpty {
            if isListed(group) { cluster?.groupEmptied(group) }
            reconciler.unwant(groupChannel(group))
            positionCheck.withLock { $0.forget(group) }
        }
    }

    func isListed(_ group: String) -> Bool {
        RedisLayerChecks.isListed(group, unlisted: configuration.unlistedGroupPrefixes)
    }

    func snapshot() -> MembershipRegistry.Snapshot {
        local.registrySnapshot(listed: isListed, connections: connectionCount())
    }
}
