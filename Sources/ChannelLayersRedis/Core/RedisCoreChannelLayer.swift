import ChannelLayers
import ChannelsProtocol
import HiredisClient
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// A channel layer that speaks channels_redis' core `RedisChannelLayer` (Django's default Redis layer):
/// the same keys, bodies, scripts and host choice, so Swift nodes and Django processes share groups and
/// channels without changing Django's settings.
///
/// - Every channel of this process is `specific.<client prefix>!<id>` on one queue, read by one
///   receive loop (never one per connection); a message for several of its channels is stored once,
///   naming them in `__asgi_channel__`, and handed to the engine's fan-out once.
/// - Groups are Django's sorted sets, and `groupSend` is Django's script: one body per receiving process,
///   written unless that process's queue holds its capacity; such a drop is counted, and recorded for the
///   receiving process, which tells the members of that group (`messagesLost`). Process queues hold
///   ``ChannelCapacities/defaultProcessQueueCapacity`` entries unless a pattern says otherwise.
/// - While its queue has entries, a process takes each batch in one round trip (one script acknowledges
///   the previous batch and pops the next); it blocks in `BZPOPMIN` only when the queue is empty.
/// - While the inboxes' event loops are behind, the loop stops popping: messages wait in Redis, bounded
///   by the queue's capacity, where senders see it (`ChannelFull`), instead of piling up in memory.
/// - Memberships are written again before `groupExpiry` purges them (django/channels#999), and after a
///   lost connection (Redis may have restarted empty).
/// - No history (recovery needs the pub/sub layer); presence is listed from the registry, with no
///   join/leave events.
///
/// Call ``run()`` in a task for as long as the layer is used; cancel it to shut down.
public final class RedisCoreChannelLayer: InboxChannelLayer, PresenceChannelLayer {

    struct State {
        /// Memberships left while a refresh was writing them again: removed once more after it.
        var leftDuringRefresh: [(group: String, channel: String)]?
        var messagesSent = 0
        var groupSends = 0
        /// Group messages this layer could not write to other processes' full queues.
        var overCapacity = 0
        /// Group messages senders could not write to this process's full queue, as they recorded it.
        var missed = 0
        var undecodable = 0
        var undecryptable = 0
        var connectionLosses = 0
        var reconnections = 0
    }

    public let configuration: Configuration
    /// One uuid4 hex per process, as Django's `client_prefix`.
    public let clientPrefix: String
    /// The non-local name of every channel of this process, and its queue key.
    let processName: String
    let queueKey: String
    let queueHost: Int
    let clients: [RedisClient]
    /// The blocking connection of the receive loop, on the queue's host.
    let receiver: RedisClient
    let envelope: MessageEnvelope
    let local: LocalChannels
    let registry: MembershipRegistry?
    let state = Mutex(State())
    /// Where each group's messages go, while its member listing stays the same.
    let groupPlans = CoreGroupPlans()
    let sendRotation = Atomic<Int>(0)
    let connectionCount: @Sendable () -> Int?
    let logger: Logger
    let warnings: WarningLimiter

    /// Creates the layer; nothing connects until ``run()``.
    public init(
        configuration: Configuration,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "ChannelLayers.redis-core"),
        connectionCount: @escaping @Sendable () -> Int? = { nil }
    ) throws(ChannelLayerError) {
        guard !configuration.hosts.isEmpty else {
            throw ChannelLayerError(.unavailable, "the Redis layer needs at least one Redis URL")
        }
        try RedisLayerChecks.nodeID(configuration.nodeID)
        try RedisLayerChecks.encryptionKeys(configuration.encryptionKeys)
        self.configuration = configuration
        self.logger = logger
        self.warnings = WarningLimiter(logger: logger)
        self.connectionCount = connectionCount
        self.clientPrefix = String(ChannelName.random(prefix: "").prefix(32))
        self.processName = "specific.\(clientPrefix)!"
        self.queueKey = configuration.prefix + processName
        self.queueHost = ShardRing.index(of: processName, hostCount: configuration.hosts.count)
        self.clients = configuration.hosts.map { host in
            var host = host
            if host.clientName == nil { host.clientName = "channels-\(configuration.nodeID)" }
            return RedisClient(configuration: host, reconnectPolicy: configuration.reconnectPolicy, eventLoopGroup: eventLoopGroup, logger: logger)
        }
        var receiverHost = configuration.hosts[queueHost]
        if receiverHost.clientName == nil { receiverHost.clientName = "channels-\(configuration.nodeID)-receive" }
        // A BZPOPMIN holds its reply for up to receiveTimeout: longer than an ordinary command may wait.
        receiverHost.commandTimeout = configuration.receiveTimeout + .seconds(10)
        self.receiver = RedisClient(configuration: receiverHost, reconnectPolicy: configuration.reconnectPolicy, eventLoopGroup: eventLoopGroup, logger: logger)
        self.envelope = MessageEnvelope(
            randomPrefixLength: configuration.randomPrefixLength, encryptionKeys: configuration.encryptionKeys,
            ttl: configuration.expiry.components.seconds + 10
        )
        self.local = LocalChannels(capacity: configuration.capacities.defaultCapacity, expiry: configuration.expiry)
        self.registry =
            configuration.registry
            ? MembershipRegistry(
                client: clients[0], prefix: configuration.prefix, nodeID: configuration.nodeID,
                ttl: configuration.registryTTL, authFingerprint: configuration.authFingerprint, logger: logger
            ) : nil
    }

    // MARK: - Running

    /// Reads this process's queue and keeps memberships and the registry going until cancelled.
    ///
    /// Returns normally when cancelled, after taking this process's members out of their groups and the registry.
    /// - Throws: ``ChannelLayerError/Code/redis`` when Redis refuses the credentials: retrying cannot help.
    public func run() async throws(ChannelLayerError) {
        var fatal: RedisError?
        do {
            try await withThrowingDiscardingTaskGroup { group in
                group.addTask { try await self.receiveLoop() }
                group.addTask { await self.refreshMemberships() }
                if let registry {
                    group.addTask { await registry.run() }
                    group.addTask { await registry.beat(every: self.configuration.heartbeatInterval) { self.snapshot() } }
                }
            }
        } catch let error as RedisError {
            fatal = error
        } catch {
            fatal = RedisError(.connectionFailed, "\(error)")
        }
        let memberships = local.withMembership { membership in
            membership.groups.flatMap { group, members in members.keys.map { (group: group, channel: $0) } }
        }
        await removeFromRedis(memberships)
        if let registry {
            await registry.removeNow(groups: Array(Set(memberships.map(\.group))))
        }
        await receiver.close()
        for client in clients { await client.close() }
        if let fatal { throw ChannelLayerError(fatal, doing: "reading this node's queue \(queueKey)") }
    }

    /// Whether the receive loop's connection is up.
    public var isConnected: Bool { receiver.isConnected }

    // MARK: - ChannelLayer

    /// `specific.<client prefix>!<prefix><id>`: every channel of this process shares one queue.
    ///
    /// With several hosts, the id is chosen so that the full name hashes to the queue's host too: Django's
    /// `send()` picks the host from the full name (django/channels#1492) and its `group_send` from the
    /// non-local part, and both then reach the queue this process reads.
    func makeChannel(prefix: String) throws(ChannelLayerError) -> String {
        let local = prefix == "specific." ? "" : prefix
        while true {
            let channel = processName + ChannelName.random(prefix: local)
            try LayerValidation.channel(channel)
            if ShardRing.index(of: channel, hostCount: clients.count) == queueHost { return channel }
        }
    }

    public func newChannel(prefix: String) async throws(ChannelLayerError) -> String {
        let channel = try makeChannel(prefix: prefix)
        local.queues.register(channel)
        return channel
    }

    public func newChannel(prefix: String, inbox: any ChannelInbox) async throws(ChannelLayerError) -> String {
        let channel = try makeChannel(prefix: prefix)
        local.withMembership { $0.addInbox(inbox, for: channel) }
        return channel
    }

    public func send(_ message: Message, to channel: String) async throws(ChannelLayerError) {
        try LayerValidation.channel(channel)
        try LayerValidation.message(message)
        guard message[CoreWire.channelField] == nil else {
            throw ChannelLayerError(.invalidMessage, "a message may not carry the reserved key '\(CoreWire.channelField)'")
        }
        if try await local.deliver(message, to: channel) {
            state.withLock { $0.messagesSent += 1 }
            return
        }
        var body = message
        let host: Int
        if channel.contains("!") {
            body[CoreWire.channelField] = .string(channel)
            // Where the receiving process reads: the host of the non-local part.
            host = ShardRing.index(of: String(CoreWire.nonLocalName(channel)), hostCount: clients.count)
        } else {
            host = sendRotation.wrappingAdd(1, ordering: .relaxed).oldValue % clients.count
        }
        let key = CoreWire.queueKey(prefix: configuration.prefix, channel: channel)
        let added: RedisReply
        do {
            added = try await CoreWire.send.run(
                [
                    1, .string(key), .string(String(WallClock.now())), .integer(expirySeconds), .integer(configuration.capacities.capacity(of: channel)),
                    .bytes(envelope.seal(body)),
                ],
                on: clients[host]
            )
        } catch {
            throw ChannelLayerError(error, doing: "sending to \(channel)")
        }
        guard added.integer == 1 else { throw .channelFull(channel) }
        state.withLock { $0.messagesSent += 1 }
    }

    public func receive(from channel: String) async throws(ChannelLayerError) -> Message {
        try await receive(from: channel, upTo: 1)[0]
    }

    public func receive(from channel: String, upTo limit: Int) async throws(ChannelLayerError) -> [Message] {
        // Django's core layer receives on full process channel names; only its internal read is per queue.
        try LayerValidation.channel(channel)
        guard channel.hasPrefix(processName) else {
            throw ChannelLayerError(
                .notLocal,
                "this layer receives only on its own channels (\(processName)...), not \(channel); Django workers read other channels"
            )
        }
        if !local.queues.isRegistered(channel) { local.queues.register(channel) }
        return try await local.queues.receive(from: channel, upTo: max(1, limit)).get()
    }

    public func groupAdd(_ group: String, channel: String) async throws(ChannelLayerError) {
        try LayerValidation.membership(group, channel)
        try local.requireLocal(channel)
        let joinedAt = WallClock.now()
        let (isNew, presence) = local.withMembership { ($0.join(group, channel: channel, at: joinedAt), $0.presence(of: channel, in: group)) }
        let key = CoreWire.groupKey(prefix: configuration.prefix, group: group)
        do {
            _ = try await groupClient(group).pipeline([
                RedisCommand("ZADD", .string(key), .string(String(joinedAt)), .string(channel)),
                RedisCommand("EXPIRE", .string(key), .integer(groupExpirySeconds)),
            ]).checked("ZADD \(key)")
        } catch {
            if isNew { _ = local.withMembership { $0.leave(group, channel: channel) } }
            throw ChannelLayerError(error, doing: "adding \(channel) to \(group)")
        }
        if isNew, isListed(group) {
            registry?.enqueue(.join(group: group, channel: channel, value: RegistryReader.value(joinedAt: joinedAt, presence: presence)))
        }
    }

    public func groupAdd(_ group: String, channel: String, presence: PresenceInfo) async throws(ChannelLayerError) {
        _ = local.withMembership { $0.addPresence(presence, channel: channel, in: group) }
        try await groupAdd(group, channel: channel)
    }

    public func presence(of group: String) async throws(ChannelLayerError) -> [PresenceMember] {
        try LayerValidation.group(group)
        let present = local.withMembership { $0.presentMembers(of: group, node: configuration.nodeID) }
        let reader = registry == nil ? nil : RegistryReader(connection: clients[0], prefix: configuration.prefix)
        return try await RegistryReader.presence(of: group, local: present, node: configuration.nodeID, reader: reader)
    }

    public func groupDiscard(_ group: String, channel: String) async throws(ChannelLayerError) {
        try LayerValidation.membership(group, channel)
        forget([group], channel: channel)
        do {
            try await groupClient(group).send(RedisCommand("ZREM", .string(CoreWire.groupKey(prefix: configuration.prefix, group: group)), .string(channel)))
        } catch {
            throw ChannelLayerError(error, doing: "removing \(channel) from \(group)")
        }
    }

    public func groupSend(_ message: Message, to group: String) async throws(ChannelLayerError) {
        try Self.checkGroupSend(message, to: group)
        let key = CoreWire.groupKey(prefix: configuration.prefix, group: group)
        let now = WallClock.now()
        let replies: [RedisReply]
        do {
            replies = try await groupClient(group).pipeline(membersCommands(key: key, now: now)).checked("reading \(key)")
        } catch {
            throw ChannelLayerError(error, doing: "reading the members of \(group)")
        }
        for write in queueWrites(of: message, to: group, members: replies[1].array ?? [], now: now) {
            let full: Int
            do {
                let replies = try await CoreWire.groupSend.run(after: write.cleanup, write.arguments, on: clients[write.host])
                full = Int(try replies.checked("the group_send script").last?.integer ?? 0)
            } catch {
                throw ChannelLayerError(error, doing: "sending to the members of \(group)")
            }
            noteFull(full, group: group)
        }
        state.withLock { $0.groupSends += 1 }
    }

    static func checkGroupSend(_ message: Message, to group: String) throws(ChannelLayerError) {
        try LayerValidation.group(group)
        try LayerValidation.message(message)
        guard message[CoreWire.channelField] == nil else {
            throw ChannelLayerError(.invalidMessage, "a message may not carry the reserved key '\(CoreWire.channelField)'")
        }
    }

    /// Django's first step of `group_send`: expire old memberships, then list the group (the second reply).
    func membersCommands(key: String, now: Double) -> [RedisCommand] {
        [
            RedisCommand("ZREMRANGEBYSCORE", .string(key), 0, .integer(Int(now) - groupExpirySeconds)),
            RedisCommand("ZRANGE", .string(key), 0, -1),
        ]
    }

    /// One group_send script call per host holding receiving processes' queues, in host order: `cleanup` expires
    /// old entries of those queues first, `arguments` carry one body per process, naming its members.
    func queueWrites(of message: Message, to group: String, members: [RedisReply], now: Double) -> [(host: Int, cleanup: [RedisCommand], arguments: [RedisArgument])] {
        let plan = groupPlans.plan(for: group, members: members) {
            CoreGroupPlan(members: members, prefix: configuration.prefix, hostCount: clients.count, capacity: configuration.capacities.capacity(of:))
        }
        let floorNow = Int(now)
        return plan.writes.map { write in
            let cleanup = write.queueKeys.map { RedisCommand("ZREMRANGEBYSCORE", .string($0), 0, .integer(floorNow - expirySeconds)) }
            var arguments: [RedisArgument] = [.integer(2 * write.queueKeys.count)]
            arguments.reserveCapacity(4 + 4 * write.queueKeys.count)
            for key in write.queueKeys { arguments.append(.string(key)) }
            for key in write.missedKeys { arguments.append(.string(key)) }
            for list in write.channelLists { arguments.append(.bytes(envelope.seal(message, adding: CoreWire.channelField, encodedValue: list))) }
            for capacity in write.capacities { arguments.append(.integer(capacity)) }
            arguments += [.string(String(now)), .integer(expirySeconds), .string(group)]
            return (write.host, cleanup, arguments)
        }
    }

    /// Counts and reports the processes whose full queue a group message was not written to (the script's reply).
    func noteFull(_ full: Int, group: String) {
        guard full > 0 else { return }
        state.withLock { $0.overCapacity += full }
        warnings.warn(
            "a group message was not written to processes whose queue is full; their members miss it and are told so (Swift nodes)",
            metadata: ["group": "\(group)", "processes": "\(full)"]
        )
    }

    public func deleteChannel(_ channel: String) async {
        let groups = local.withMembership { $0.groups(of: channel) }
        forget(groups, channel: channel)
        await removeFromRedis(groups.map { (group: $0, channel: channel) })
        local.remove(channel)
    }

    /// Forgets this process's channels and memberships, and removes the memberships from Redis.
    public func flush() async throws(ChannelLayerError) {
        let memberships = local.withMembership { membership in
            defer { membership.removeAllMemberships() }
            return membership.groups.flatMap { group, members in members.keys.map { (group: group, channel: $0) } }
        }
        local.queues.removeAll()
        await removeFromRedis(memberships)
        if let registry, !memberships.isEmpty { registry.enqueue(.remove(groups: Array(Set(memberships.map(\.group))))) }
    }

    public var statistics: ChannelLayerStatistics {
        var statistics = ChannelLayerStatistics()
        state.withLock { state in
            statistics.messagesSent = state.messagesSent
            statistics.groupSends = state.groupSends
            statistics.undecodable = state.undecodable + state.undecryptable
            statistics.connectionLosses = state.connectionLosses
            statistics.reconnections = state.reconnections
            statistics.dropped = state.overCapacity
            statistics.missed = state.missed
        }
        local.count(into: &statistics)
        return statistics
    }

    /// What this layer alone counts: bodies no key decrypts, group messages it could not write to full
    /// queues, and group messages senders could not write to this process's full queue (as they recorded it).
    public var coreStatistics: (undecryptable: Int, overCapacity: Int, missed: Int) {
        state.withLock { ($0.undecryptable, $0.overCapacity, $0.missed) }
    }

    // MARK: - Receiving

    // MARK: - Memberships

    // MARK: - Internals

    var expirySeconds: Int { max(1, Int(configuration.expiry.components.seconds)) }
    var groupExpirySeconds: Int { max(1, Int(configuration.groupExpiry.components.seconds)) }

    func groupClient(_ group: String) -> RedisClient {
        clients[ShardRing.index(of: group, hostCount: clients.count)]
    }

    func isListed(_ group: String) -> Bool {
        RedisLayerChecks.isListed(group, unlisted: configuration.unlistedGroupPrefixes)
    }

    func snapshot() -> MembershipRegistry.Snapshot {
        local.registrySnapshot(listed: isListed, connections: connectionCount())
    }
}
