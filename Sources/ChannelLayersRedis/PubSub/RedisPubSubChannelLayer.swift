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
public final class RedisPubSubChannelLayer: ChannelLayer {
    /// Where Redis is and how the layer behaves.
    public struct Configuration: Sendable {
        /// The Redis hosts; names are sharded over them in this order, as channels_redis does.
        public var hosts: [RedisConfiguration]
        /// Redis Cluster seed nodes; when given, ``hosts`` is not used and pub/sub is sharded (Redis 7).
        public var cluster: [RedisConfiguration] = []
        /// The prefix of every Redis channel and registry key (channels_redis' default is `asgi`).
        public var prefix: String
        /// Messages a local channel holds before more are dropped (`send` to a local channel throws).
        public var capacity: Int
        /// How long an unreceived message waits in a local queue.
        public var expiry: Duration
        /// This process's id in the registry: letters, digits, `-`, `_`, `.` (default: `node-` and 12 random hex digits).
        public var nodeID: String
        /// Whether to record memberships in Redis for operators.
        public var registry: Bool
        /// How often the registry's heartbeat is written.
        public var heartbeatInterval: Duration
        /// How long registry entries outlive the last heartbeat.
        public var registryTTL: Duration
        /// Backoff between reconnection attempts.
        public var reconnectPolicy: RedisReconnectPolicy
        /// Groups whose names start with one of these are kept out of the registry (internal groups such as
        /// a node's readiness probe).
        public var unlistedGroupPrefixes: [String] = []
        /// A fingerprint of the node's authentication settings, written to the registry so that a node
        /// can see when its peers authenticate differently (`none`: no authentication).
        public var authFingerprint = "none"
        /// Which groups keep a history for recovering clients (keys in ``HistoryScript``).
        public var history = HistoryConfiguration.none
        /// Django's `symmetric_encryption_keys`: payloads are Fernet tokens made with the first and read
        /// with any. History groups need readable payloads (the history script numbers them in Redis), so
        /// encryption and history exclude each other.
        public var encryptionKeys: [String] = []

        public init(
            hosts: [RedisConfiguration],
            prefix: String = "asgi",
            capacity: Int = 100,
            expiry: Duration = .seconds(60),
            nodeID: String? = nil,
            registry: Bool = true,
            heartbeatInterval: Duration = .seconds(10),
            registryTTL: Duration = .seconds(30),
            reconnectPolicy: RedisReconnectPolicy = RedisReconnectPolicy()
        ) {
            self.hosts = hosts
            self.prefix = prefix
            self.capacity = capacity
            self.expiry = expiry
            self.nodeID = nodeID ?? String(ChannelName.random(prefix: "node-").prefix(17))
            self.registry = registry
            self.heartbeatInterval = heartbeatInterval
            self.registryTTL = registryTTL
            self.reconnectPolicy = reconnectPolicy
        }

        /// A configuration from Redis URLs, one per shard.
        public init(urls: [String]) throws(ChannelLayerError) {
            self.init(hosts: try RedisConfiguration.hosts(urls))
        }
    }

    private struct State {
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
    private let shards: [Shard]
    private let local: LocalChannels
    private let reconciler: SubscriptionReconciler
    private let registry: MembershipRegistry?
    private let state = Mutex(State())
    private let positionCheck = Mutex(HistoryPositionCheck())
    private let connectionCount: @Sendable () -> Int?
    private let logger: Logger
    private let warnings: WarningLimiter
    private let groupPrefix: String
    private let envelope: MessageEnvelope
    /// Whether this is Redis Cluster with sharded pub/sub.
    private let clustered: Bool
    private let publishCommand: String
    /// Presence events travel on a channel of their own, `{prefix}__presence__{group}`: Django consumers in
    /// the same group would fail on a message type they have no handler for.
    private let presencePrefix: String

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
            throw ChannelLayerError(.redis, "the Redis layer needs at least one Redis URL or Redis Cluster seed")
        }
        guard ChannelNames.isValidGroup(configuration.nodeID) else {
            throw ChannelLayerError(.invalidName, "node id '\(configuration.nodeID)' may only hold ASCII letters, digits, '-', '_' and '.'")
        }
        if !configuration.encryptionKeys.isEmpty, !configuration.history.patterns.isEmpty {
            throw ChannelLayerError(
                .invalidMessage,
                "encrypted messages cannot keep a history (the history script numbers readable payloads in Redis); turn history off (--history none) or encryption"
            )
        }
        if configuration.encryptionKeys.contains(where: \.isEmpty) {
            throw ChannelLayerError(.invalidMessage, "an encryption key is empty; give each key on a line or between commas")
        }
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
        router.layer.withLock { $0 = self }
        router.subscribers.withLock { $0 = shards.map(\.subscriber) }
    }

    /// One host of channels_redis' ring, or the whole cluster.
    private struct Shard: Sendable {
        let client: any RedisCommandSender
        let subscriber: any LayerSubscriber
        let close: @Sendable () async -> Void
    }

    /// Lets the subscribers, made before the layer, reach it; they live and end with the layer.
    private final class MessageRouter: Sendable {
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
            }
        } catch let error as RedisError {
            throw ChannelLayerError(error, doing: "connecting to Redis")
        } catch {
            throw ChannelLayerError(.redis, "the Redis layer stopped: \(error)")
        }
        if let registry {
            await registry.removeNow(groups: local.withMembership { Array($0.groups.keys) })
        }
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
        let (isNew, presence) = local.withMembership { ($0.join(group, channel: channel, at: joinedAt), $0.presence(of: channel, in: group)) }
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

    public func groupAdd(_ group: String, channel: String, presence: PresenceInfo) async throws(ChannelLayerError) {
        let isNew = local.withMembership { $0.addPresence(presence, channel: channel, in: group) }
        try await groupAdd(group, channel: channel)
        try await reconciler.want(presenceChannel(group))
        if isNew {
            let event = PresenceEvent.message("join", channel: channel, presence: presence, node: configuration.nodeID, at: WallClock.now())
            try? await publish(event, on: presenceChannel(group))
        }
    }

    public func presence(of group: String) async throws(ChannelLayerError) -> [PresenceMember] {
        try LayerValidation.group(group)
        let present = local.withMembership { $0.presentMembers(of: group, node: configuration.nodeID) }
        let reader = registry == nil ? nil : RegistryReader(connection: shards[0].client, prefix: configuration.prefix)
        return try await RegistryReader.presence(of: group, local: present, node: configuration.nodeID, reader: reader)
    }

    /// Takes `channel` out of the presence of `groups`; returns the leave events to send.
    private func leavePresence(_ channel: String, groups: some Sequence<String>) -> [(group: String, event: Message)] {
        let now = WallClock.now()
        let (left, emptied) = local.withMembership { $0.removePresence(of: channel, in: groups) }
        // The last local member with presence gone: this node stops listening to the group's events.
        for group in emptied { reconciler.unwant(presenceChannel(group)) }
        return left.map { ($0.group, PresenceEvent.message("leave", channel: channel, presence: $0.info, node: configuration.nodeID, at: now)) }
    }

    private func announce(_ events: [(group: String, event: Message)]) async {
        for (group, event) in events { try? await publish(event, on: presenceChannel(group)) }
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

    public func keepsHistory(_ group: String) -> Bool {
        configuration.history.keepsHistory(group)
    }

    public func history(of group: String, after offset: Int64?, limit: Int) async throws(ChannelLayerError) -> GroupHistory? {
        try LayerValidation.group(group)
        guard keepsHistory(group) else { return nil }
        let client = shard(for: groupChannel(group)).client
        let meta = HistoryScript.metaKey(prefix: configuration.prefix, group: group)
        let stream = HistoryScript.streamKey(prefix: configuration.prefix, group: group)
        let count = max(0, limit)
        // Every read is bounded by COUNT: a client asking for offset 0 of a long history costs one page.
        let read: RedisCommand =
            switch offset {
            case nil: RedisCommand("XREVRANGE", .string(stream), "+", "-", "COUNT", .integer(count))
            case let offset? where offset < Int64.max: RedisCommand("XRANGE", .string(stream), .string("(\(max(offset, 0))-0"), "+", "COUNT", .integer(count))
            default: RedisCommand("XLEN", .string(stream))
            }
        let replies: [RedisReply]
        do {
            replies = try await client.pipeline([
                // A group nothing was sent to yet gets its epoch now, so that a client that recovers before
                // the first message already holds the epoch that message will carry.
                RedisCommand("HSETNX", .string(meta), "epoch", .string(String(ChannelName.random(prefix: "").prefix(8)))),
                RedisCommand("EXPIRE", .string(meta), .integer(max(HistoryScript.metaTTLSeconds, Int(configuration.history.ttl.components.seconds))), "NX"),
                RedisCommand("HMGET", .string(meta), "offset", "epoch"),
                count > 0 ? read : RedisCommand("XLEN", .string(stream)),
                RedisCommand("XRANGE", .string(stream), "-", "+", "COUNT", 1),
            ])
        } catch {
            throw ChannelLayerError(error, doing: "reading the history of \(group)")
        }
        let fields = replies[2].array ?? []
        let top = fields.first?.string.flatMap { Int64($0) } ?? 0
        let epoch = fields.count > 1 ? fields[1].string ?? "" : ""
        var messages: [(offset: Int64, message: Message)] = []
        var bytes = 0
        for entry in replies[3].array ?? [] {
            // Entries above the top belong to a stream an earlier epoch left behind: never replayed.
            guard let (offset, message, size) = Self.historyEntry(entry), offset <= top else { continue }
            messages.append((offset, message))
            bytes += size
        }
        if offset == nil { messages.reverse() }
        let oldest = (replies[4].array?.first).flatMap { Self.historyEntry($0)?.offset }.flatMap { $0 <= top ? $0 : nil }
        state.withLock { $0.historyBytesRead += bytes }
        return GroupHistory(top: HistoryPosition(offset: top, epoch: epoch), messages: messages, oldest: oldest, bytes: bytes)
    }

    /// An XRANGE entry `[id, [field, value]]` as its offset, the message without the history keys, and its size.
    private static func historyEntry(_ entry: RedisReply) -> (offset: Int64, message: Message, bytes: Int)? {
        guard let parts = entry.array, parts.count == 2, let id = parts[0].string,
            let offset = Int64(id.split(separator: "-").first ?? ""), let values = parts[1].array, values.count >= 2,
            let payload = values[1].bytes, let decoded = try? MessagePack.decodeMessage(payload)
        else { return nil }
        return (offset, stripHistoryKeys(decoded).message, payload.count)
    }

    /// The message without `__offset` and `__epoch`, and the position they claim (not yet trusted).
    private static func stripHistoryKeys(_ message: Message) -> (message: Message, position: HistoryPosition?) {
        let offset = message[HistoryScript.offsetKey]
        let epoch = message[HistoryScript.epochKey]
        guard offset != nil || epoch != nil else { return (message, nil) }
        var stripped = message
        stripped[HistoryScript.offsetKey] = nil
        stripped[HistoryScript.epochKey] = nil
        guard let offset = offset?.int, offset > 0, let epoch = epoch?.string else { return (stripped, nil) }
        return (stripped, HistoryPosition(offset: offset, epoch: epoch))
    }

    public func deleteChannel(_ channel: String) async {
        let groups = local.withMembership { $0.groupsOfChannel[channel] ?? [] }
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
    }

    public var statistics: ChannelLayerStatistics {
        var statistics = ChannelLayerStatistics()
        state.withLock { state in
            statistics.messagesSent = state.messagesSent
            statistics.groupSends = state.groupSends
            statistics.undecodable = state.undecodable
            statistics.redisConnectionLosses = state.connectionLosses
            statistics.redisResubscriptions = state.resubscriptions
            statistics.historyBytesWritten = state.historyBytesWritten
            statistics.historyBytesRead = state.historyBytesRead
            statistics.untrustedOffsets = state.untrustedOffsets
        }
        local.count(into: &statistics)
        return statistics
    }

    // MARK: - Internals

    private func shard(for name: String) -> Shard {
        shards[ShardRing.index(of: name, hostCount: shards.count)]
    }

    /// A group's Redis channel: channels_redis' `asgi__group__chat`; on a cluster `asgi__group__{chat}`, in
    /// the slot of the group's history keys, so the history script publishes where it writes.
    private func groupChannel(_ group: String) -> String {
        clustered ? "\(groupPrefix){\(group)}" : groupPrefix + group
    }

    private func presenceChannel(_ group: String) -> String {
        clustered ? "\(presencePrefix){\(group)}" : presencePrefix + group
    }

    /// The group a Redis channel with `prefix` is for, or `nil` when it has another prefix.
    private func group(in channel: String, after prefix: String) -> String? {
        guard channel.hasPrefix(prefix) else { return nil }
        let rest = channel.utf8.dropFirst(prefix.utf8.count)
        if clustered, rest.first == UInt8(ascii: "{"), rest.last == UInt8(ascii: "}") {
            return String(rest.dropFirst().dropLast())
        }
        return String(rest)
    }


    /// One script call: the message goes into the group's history with the next offset, then is published
    /// with its offset and epoch.
    private func publishWithHistory(_ message: Message, group: String) async throws(ChannelLayerError) -> HistoryPosition? {
        let channel = groupChannel(group)
        let history = configuration.history
        let payload = MessagePack.encode(message)
        let reply: RedisReply
        do {
            reply = try await shard(for: channel).client.send(
                RedisCommand(
                    "EVAL", .string(HistoryScript.publish), 2,
                    .string(HistoryScript.metaKey(prefix: configuration.prefix, group: group)),
                    .string(HistoryScript.streamKey(prefix: configuration.prefix, group: group)),
                    .string(channel), .bytes(payload), .integer(history.size),
                    .integer(max(1, Int(history.ttl.components.seconds))), .integer(max(HistoryScript.metaTTLSeconds, Int(history.ttl.components.seconds))),
                    .string(String(ChannelName.random(prefix: "").prefix(8))), .string(publishCommand), .integer(history.maxBytes)
                )
            )
        } catch {
            throw ChannelLayerError(error, doing: "publishing to \(channel) with history")
        }
        // What the stream holds for it: the payload, the two history keys and their values.
        state.withLock { $0.historyBytesWritten += payload.count + 30 }
        // The script answers {offset, epoch}.
        guard let parts = reply.array, parts.count == 2, let offset = parts[0].integer, let epoch = parts[1].string else { return nil }
        return HistoryPosition(offset: offset, epoch: epoch)
    }

    private func publish(_ message: Message, on name: String) async throws(ChannelLayerError) {
        let payload = envelope.seal(message)
        do {
            _ = try await shard(for: name).client.send(RedisCommand(publishCommand, .string(name), .bytes(payload)))
        } catch {
            throw ChannelLayerError(error, doing: "publishing to \(name)")
        }
    }

    private func discard(_ group: String, channel: String) {
        let (wasMember, groupEmpty) = local.withMembership { $0.leave(group, channel: channel) }
        guard wasMember else { return }
        if isListed(group) { registry?.enqueue(.leave(group: group, channel: channel)) }
        if groupEmpty {
            reconciler.unwant(groupChannel(group))
            positionCheck.withLock { $0.forget(group) }
        }
    }

    /// Routes the messages of one read from a host to local inboxes and queues, decoding each payload once.
    /// Runs on the subscriber's event loop. Returns `false` when the inboxes' event loops are behind: the
    /// subscriber stops reading (Redis buffers for it) until `resume` is called, and nothing is dropped.
    private func deliver(_ messages: [RedisPubSubMessage], resume: @escaping @Sendable () -> Void) -> Bool {
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
                switch positionCheck.withLock({ $0.admit(item, group: group) }) {
                case .deliver(let message, let position):
                    deliver(message, position: position, group: group, pushed: pushed, queued: queued)
                case .held:
                    break
                case .verify(let position, let payload):
                    verify(position, payload: payload, group: group)
                }
            } else if let group = group(in: message.channel, after: presencePrefix) {
                let pushed = local.withMembership { $0.pushed.members(of: group) }
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

    private func deliver(
        _ message: Message, position: HistoryPosition?, group: String, pushed: [GroupIndex.LoopMembers], queued: Set<String>?
    ) {
        if !pushed.isEmpty { local.dispatcher.dispatch(Delivery(message, group: group, position: position), to: pushed) }
        if let queued { local.queues.putMany(message, on: queued) }
    }

    /// Checks a claimed position against the group's history (off the subscriber's event loop), then delivers
    /// it and the group's messages that waited behind it.
    private func verify(_ position: HistoryPosition, payload: [UInt8], group: String) {
        Task {
            let genuine = await isAssigned(position, payload: payload, group: group)
            let release = positionCheck.withLock { $0.verified(group: group, genuine: genuine) }
            let (pushed, queued) = local.withMembership { ($0.pushed.members(of: group), $0.queuedMembers[group]) }
            for (message, position) in release.deliveries {
                deliver(message, position: position, group: group, pushed: pushed, queued: queued)
            }
            if release.untrusted > 0 {
                state.withLock { $0.untrustedOffsets += release.untrusted }
                warnings.warn(
                    "delivered a message without the history offset it carried: the group's history did not assign it (a publisher other than the history script set __offset/__epoch)",
                    metadata: ["group": "\(group)"]
                )
            }
            if let next = release.verify { verify(next.position, payload: next.payload, group: group) }
        }
    }

    /// Whether the history script published `payload` at `position`: the group's epoch is the same and its
    /// stream holds those bytes at that offset.
    private func isAssigned(_ position: HistoryPosition, payload: [UInt8], group: String) async -> Bool {
        let meta = HistoryScript.metaKey(prefix: configuration.prefix, group: group)
        let stream = HistoryScript.streamKey(prefix: configuration.prefix, group: group)
        let id = "\(position.offset)-0"
        do {
            let replies = try await shard(for: groupChannel(group)).client.pipeline([
                RedisCommand("HGET", .string(meta), "epoch"),
                RedisCommand("XRANGE", .string(stream), .string(id), .string(id)),
            ])
            guard replies[0].string == position.epoch, let entry = replies[1].array?.first?.array, entry.count == 2,
                let fields = entry[1].array, fields.count >= 2
            else { return false }
            return fields[1].bytes == payload
        } catch {
            warnings.warn("could not check a history offset against Redis; the message goes without it", metadata: ["error": "\(error.message)"])
            return false
        }
    }

    private func decode(_ message: RedisPubSubMessage) -> Message? {
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

    private func watch(_ subscriber: any LayerSubscriber, shard index: Int) async {
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
    private func tellInboxesOfLoss(onShard index: Int, channels: Set<String>?) {
        func lost(_ name: String) -> Bool {
            if let channels { return channels.contains(name) }
            return ShardRing.index(of: name, hostCount: shards.count) == index
        }
        let affected = local.withMembership { membership in
            membership.inboxes.filter { channel, _ in
                lost(channel) || (membership.groupsOfChannel[channel] ?? []).contains { lost(groupChannel($0)) }
            }.map(\.value)
        }
        // Offsets after the gap are checked against the history again.
        positionCheck.withLock { $0.forgetAll() }
        let reason = "this node lost its Redis subscription; messages sent until it is back are not delivered"
        for inbox in affected {
            inbox.eventLoop.execute { inbox.messagesLost(reason: reason) }
        }
    }

    private func isListed(_ group: String) -> Bool {
        !configuration.unlistedGroupPrefixes.contains { group.hasPrefix($0) }
    }

    private func snapshot() -> MembershipRegistry.Snapshot {
        local.registrySnapshot(listed: isListed, connections: connectionCount())
    }
}
