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
///   `BZPOPMIN` loop (never one per connection); a message for several of its channels is stored once,
///   naming them in `__asgi_channel__`, and handed to the engine's fan-out once.
/// - Groups are Django's sorted sets, and `groupSend` is Django's script: one body per receiving process,
///   written unless that process's queue holds its capacity (those drops are counted).
/// - While the inboxes' event loops are behind, the loop stops popping: messages wait in Redis, bounded
///   by the queue's capacity, where senders see it (`ChannelFull`), instead of piling up in memory.
/// - Memberships are written again before `groupExpiry` purges them (django/channels#999), and after a
///   lost connection (Redis may have restarted empty).
/// - No history (recovery needs the pub/sub layer); presence is listed from the registry, with no
///   join/leave events.
///
/// Call ``run()`` in a task for as long as the layer is used; cancel it to shut down.
public final class RedisCoreChannelLayer: ChannelLayer {
    /// Where Redis is and how the layer behaves; the defaults are channels_redis'.
    public struct Configuration: Sendable {
        /// The Redis hosts, in the order Django lists them (names are sharded over them by that order).
        public var hosts: [RedisConfiguration]
        /// The prefix of every key (`asgi`).
        public var prefix: String
        /// How long a message waits in a queue (`expiry`, 60 s).
        public var expiry: Duration
        /// How long a membership lasts without being written again (`group_expiry`, 86,400 s).
        public var groupExpiry: Duration
        /// Queue capacities: `capacity` (100) and the `channel_capacity` patterns.
        public var capacities: ChannelCapacities
        /// `symmetric_encryption_keys`: the first encrypts, any decrypts; empty: no encryption.
        public var encryptionKeys: [String]
        /// Random bytes before each body (`random_prefix_length`, 12).
        public var randomPrefixLength: Int
        /// How long one `BZPOPMIN` blocks (`brpop_timeout`, 5 s).
        public var receiveTimeout: Duration
        /// Messages taken from the queue in one step once one arrived.
        public var receiveBatch: Int
        /// This process's id in the registry (letters, digits, `-`, `_`, `.`).
        public var nodeID: String
        /// Whether to record memberships in the registry for operators (see ``MembershipRegistry``).
        public var registry: Bool
        public var heartbeatInterval: Duration
        public var registryTTL: Duration
        public var reconnectPolicy: RedisReconnectPolicy
        /// Groups kept out of the registry (a node's readiness probe).
        public var unlistedGroupPrefixes: [String] = []
        /// A fingerprint of the node's authentication settings, written to the registry.
        public var authFingerprint = "none"

        public init(
            hosts: [RedisConfiguration],
            prefix: String = "asgi",
            expiry: Duration = .seconds(60),
            groupExpiry: Duration = .seconds(86_400),
            capacities: ChannelCapacities = ChannelCapacities(),
            encryptionKeys: [String] = [],
            nodeID: String? = nil
        ) {
            self.hosts = hosts
            self.prefix = prefix
            self.expiry = expiry
            self.groupExpiry = groupExpiry
            self.capacities = capacities
            self.encryptionKeys = encryptionKeys
            self.randomPrefixLength = 12
            self.receiveTimeout = .seconds(5)
            self.receiveBatch = 256
            self.nodeID = nodeID ?? String(ChannelName.random(prefix: "node-").prefix(17))
            self.registry = true
            self.heartbeatInterval = .seconds(10)
            self.registryTTL = .seconds(30)
            self.reconnectPolicy = RedisReconnectPolicy()
        }

        /// A configuration from Redis URLs, one per host.
        public init(urls: [String]) throws(ChannelLayerError) {
            self.init(hosts: try RedisConfiguration.hosts(urls))
        }

        /// How often memberships are written again: well inside `groupExpiry`, at most hourly.
        var membershipRefreshInterval: Duration {
            min(.seconds(3600), max(.milliseconds(500), groupExpiry / 3))
        }
    }

    private struct State {
        /// Memberships left while a refresh was writing them again: removed once more after it.
        var leftDuringRefresh: [(group: String, channel: String)]?
        var messagesSent = 0
        var groupSends = 0
        var overCapacity = 0
        var undecodable = 0
        var undecryptable = 0
        var connectionLosses = 0
        var reconnections = 0
    }

    public let configuration: Configuration
    /// One uuid4 hex per process, as Django's `client_prefix`.
    public let clientPrefix: String
    /// The non-local name of every channel of this process, and its queue key.
    private let processName: String
    private let queueKey: String
    private let queueHost: Int
    private let clients: [RedisClient]
    /// The blocking connection of the receive loop, on the queue's host.
    private let receiver: RedisClient
    private let envelope: MessageEnvelope
    private let local: LocalChannels
    private let registry: MembershipRegistry?
    private let state = Mutex(State())
    private let sendRotation = Atomic<Int>(0)
    private let connectionCount: @Sendable () -> Int?
    private let logger: Logger
    private let warnings: WarningLimiter

    /// Creates the layer; nothing connects until ``run()``.
    public init(
        configuration: Configuration,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "ChannelLayers.redis-core"),
        connectionCount: @escaping @Sendable () -> Int? = { nil }
    ) throws(ChannelLayerError) {
        guard !configuration.hosts.isEmpty else {
            throw ChannelLayerError(.redis, "the Redis layer needs at least one Redis URL")
        }
        guard ChannelNames.isValidGroup(configuration.nodeID) else {
            throw ChannelLayerError(.invalidName, "node id '\(configuration.nodeID)' may only hold ASCII letters, digits, '-', '_' and '.'")
        }
        if let empty = configuration.encryptionKeys.first(where: \.isEmpty) {
            throw ChannelLayerError(.invalidMessage, "an encryption key is empty ('\(empty)'); give each key on a line or between commas")
        }
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
    private func makeChannel(prefix: String) throws(ChannelLayerError) -> String {
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
            added = try await clients[host].send(
                RedisCommand(
                    "EVAL", .string(CoreWire.sendScript), 1, .string(key),
                    .string(String(WallClock.now())), .integer(expirySeconds), .integer(configuration.capacities.capacity(of: channel)),
                    .bytes(envelope.seal(body))
                )
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
        try LayerValidation.group(group)
        try LayerValidation.message(message)
        guard message[CoreWire.channelField] == nil else {
            throw ChannelLayerError(.invalidMessage, "a message may not carry the reserved key '\(CoreWire.channelField)'")
        }
        let key = CoreWire.groupKey(prefix: configuration.prefix, group: group)
        let now = WallClock.now()
        let replies: [RedisReply]
        do {
            replies = try await groupClient(group).pipeline([
                RedisCommand("ZREMRANGEBYSCORE", .string(key), 0, .integer(Int(now) - groupExpirySeconds)),
                RedisCommand("ZRANGE", .string(key), 0, -1),
            ]).checked("reading \(key)")
        } catch {
            throw ChannelLayerError(error, doing: "reading the members of \(group)")
        }
        // One body per receiving process, naming its members; processes bucketed by host.
        var buckets: [String: [String]] = [:]
        var order: [String] = []
        for member in replies[1].array ?? [] {
            guard let channel = member.string else { continue }
            let queue = CoreWire.queueKey(prefix: configuration.prefix, channel: channel)
            if buckets[queue] == nil { order.append(queue) }
            buckets[queue, default: []].append(channel)
        }
        var byHost: [Int: [String]] = [:]
        for queue in order {
            let nonLocal = String(queue.dropFirst(configuration.prefix.count))
            byHost[ShardRing.index(of: nonLocal, hostCount: clients.count), default: []].append(queue)
        }
        let floorNow = Int(now)
        for (host, queueKeys) in byHost.sorted(by: { $0.key < $1.key }) {
            var bodies: [RedisArgument] = []
            var capacities: [RedisArgument] = []
            for queue in queueKeys {
                var body = message
                let members = buckets[queue]!
                body[CoreWire.channelField] = .array(members.map { .string($0) })
                bodies.append(.bytes(envelope.seal(body)))
                capacities.append(.integer(configuration.capacities.capacity(of: members[0])))
            }
            var commands = queueKeys.map { RedisCommand("ZREMRANGEBYSCORE", .string($0), 0, .integer(floorNow - expirySeconds)) }
            commands.append(
                RedisCommand(
                    "EVAL",
                    arguments: [.string(CoreWire.groupSendScript), .integer(queueKeys.count)] + queueKeys.map { .string($0) } + bodies + capacities
                        + [.string(String(now)), .integer(expirySeconds)]
                )
            )
            let full: Int
            do {
                full = Int(try await clients[host].pipeline(commands).checked("the group_send script").last?.integer ?? 0)
            } catch {
                throw ChannelLayerError(error, doing: "sending to the members of \(group)")
            }
            if full > 0 {
                state.withLock { $0.overCapacity += full }
                warnings.warn(
                    "a group message was not written to processes whose queue is full; their members miss it",
                    metadata: ["group": "\(group)", "processes": "\(full)"]
                )
            }
        }
        state.withLock { $0.groupSends += 1 }
    }

    public func keepsHistory(_ group: String) -> Bool { false }

    public func history(of group: String, after offset: Int64?, limit: Int) async throws(ChannelLayerError) -> GroupHistory? {
        try LayerValidation.group(group)
        return nil
    }

    public func deleteChannel(_ channel: String) async {
        let groups = local.withMembership { $0.groupsOfChannel[channel] ?? [] }
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
            statistics.redisConnectionLosses = state.connectionLosses
            statistics.redisResubscriptions = state.reconnections
            statistics.dropped = state.overCapacity
        }
        local.count(into: &statistics)
        return statistics
    }

    /// What this layer alone counts: bodies no key decrypts, and group messages over a channel's capacity.
    public var coreStatistics: (undecryptable: Int, overCapacity: Int) {
        state.withLock { ($0.undecryptable, $0.overCapacity) }
    }

    // MARK: - Receiving

    /// The one loop that reads this process's queue: restore what a previous run left in flight, then
    /// `BZPOPMIN`, take whatever else waits in the same step, hand it all to the local channels, and
    /// acknowledge it with the next pop.
    /// - Throws: what retrying cannot fix (refused credentials, a command the ACL forbids).
    private func receiveLoop() async throws(RedisError) {
        let inflight = CoreWire.inflightKey(queue: queueKey)
        let timeout = max(1, Int(configuration.receiveTimeout.components.seconds))
        var restored = false
        var acknowledge: [[UInt8]] = []
        // Failures in a row that lost the connection (Redis may have restarted empty: memberships are written
        // again once it is back), and error replies in a row on a live connection (a key of the wrong type:
        // memberships are intact, only the queue cannot be read). Both reset once a pop succeeds.
        var losses = 0
        var refusals = 0
        var rewriteMemberships = false
        let fatal: RedisError? = await withTaskCancellationHandler {
            while !Task.isCancelled {
                do throws(RedisError) {
                    if !restored {
                        let count = try await receiver.send(RedisCommand("EVAL", .string(CoreWire.restoreInflightScript), 2, .string(queueKey), .string(inflight)))
                        if let count = count.integer, count > 0 {
                            logger.info("re-queued messages a previous receive left unhandled", metadata: ["count": "\(count)"])
                        }
                        restored = true
                        if rewriteMemberships {
                            rewriteMemberships = false
                            state.withLock { $0.reconnections += 1 }
                            logger.info("Redis is back; reading the queue again and writing memberships anew", metadata: ["queue": "\(queueKey)"])
                            await writeMemberships()
                        }
                    }
                    var commands: [RedisCommand] = []
                    if !acknowledge.isEmpty {
                        commands.append(RedisCommand("ZREM", arguments: [.string(inflight)] + acknowledge.map { .bytes($0) }))
                    }
                    commands.append(RedisCommand("BZPOPMIN", .string(queueKey), .integer(timeout)))
                    let replies = try await receiver.pipeline(commands).checked("BZPOPMIN \(queueKey)")
                    acknowledge = []
                    losses = 0
                    refusals = 0
                    guard let popped = replies.last?.array, popped.count == 3, let first = popped[1].bytes, let score = popped[2].string else {
                        continue
                    }
                    let more = try await receiver.send(
                        RedisCommand(
                            "EVAL", .string(CoreWire.takeBatchScript), 2, .string(queueKey), .string(inflight),
                            .integer(configuration.receiveBatch - 1), .bytes(first), .string(score)
                        )
                    ).array ?? []
                    var bodies = [first]
                    var index = 0
                    while index + 1 < more.count {
                        if let body = more[index].bytes { bodies.append(body) }
                        index += 2
                    }
                    acknowledge = bodies
                    for body in bodies { deliver(body) }
                    // Messages wait in Redis, not here, while the event loops catch up.
                    await local.dispatcher.waitForRoom()
                } catch {
                    if Task.isCancelled { break }
                    // Bad credentials, or an ACL without the commands this layer needs: retrying cannot help.
                    guard error.isRetryable, error.serverMessage?.hasPrefix("NOPERM") != true else { return error }
                    if error.code == .errorReply {
                        // Redis answers but refuses to read the queue (say `SET` put a string at its key): the
                        // connection and the memberships are fine; retry, slower each time, and say so sparingly.
                        refusals += 1
                        warnings.warn(
                            "Redis refuses to read this node's queue; messages for it wait or are lost until the key is fixed",
                            metadata: ["queue": "\(queueKey)", "error": "\(error.message)"]
                        )
                        try? await Task.sleep(for: Self.refusalBackoff.delay(forAttempt: refusals))
                        continue
                    }
                    losses += 1
                    restored = false
                    rewriteMemberships = true
                    if losses == 1 {
                        state.withLock { $0.connectionLosses += 1 }
                        logger.warning(
                            "lost the Redis connection that reads this node's queue; messages wait in Redis until it is back",
                            metadata: ["error": "\(error.message)"]
                        )
                    } else if losses % 10 == 0 {
                        logger.warning("cannot reach Redis", metadata: ["error": "\(error.message)", "attempt": "\(losses)"])
                    }
                    try? await Task.sleep(for: configuration.reconnectPolicy.delay(forAttempt: losses))
                }
            }
            return nil
        } onCancel: {
            // Ends a BZPOPMIN that would otherwise block shutdown for up to receiveTimeout.
            Task { await self.receiver.close() }
        }
        if let fatal { throw fatal }
    }

    /// How long the receive loop waits after Redis refused to read the queue: 100 ms, doubling to 5 s.
    static let refusalBackoff = RedisReconnectPolicy(initialDelay: .milliseconds(100), maximumDelay: .seconds(5), jitter: 0.1)

    /// Hands one body from the queue to the local channels it names, decoding it once.
    private func deliver(_ body: [UInt8]) {
        let message: Message
        let channels: [String]
        do {
            (message, channels) = try envelope.open(body)
        } catch {
            switch error {
            case .undecryptable(let reason):
                state.withLock { $0.undecryptable += 1 }
                warnings.warn(
                    "dropped a message no encryption key of this node decrypts; check CHANNELS_SYMMETRIC_ENCRYPTION_KEYS against Django's symmetric_encryption_keys",
                    metadata: ["queue": "\(queueKey)", "reason": "\(reason)"]
                )
            case .undecodable(let reason):
                state.withLock { $0.undecodable += 1 }
                warnings.warn("dropped a queue entry that is not a channel layer message", metadata: ["queue": "\(queueKey)", "reason": "\(reason)"])
            }
            return
        }
        var inboxes: [any ChannelInbox] = []
        var queued: [String] = []
        local.withMembership { membership in
            for channel in channels {
                if let inbox = membership.inboxes[channel] {
                    inboxes.append(inbox)
                } else {
                    queued.append(channel)
                }
            }
        }
        // Channels that left meanwhile (or were never this process's) miss it: they are no members any more.
        for channel in queued { _ = local.queues.put(message, on: channel, create: false) }
        guard !inboxes.isEmpty else { return }
        let delivery = Delivery(message)
        if inboxes.count == 1 {
            local.dispatcher.dispatch(delivery, to: inboxes[0])
        } else {
            local.dispatcher.dispatch(delivery, to: GroupIndex.byEventLoop(inboxes))
        }
    }

    // MARK: - Memberships

    /// Writes every local membership again, well before `groupExpiry` would purge it.
    private func refreshMemberships() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: configuration.membershipRefreshInterval)
            if Task.isCancelled { break }
            await writeMemberships()
        }
    }

    private func writeMemberships() async {
        state.withLock { $0.leftDuringRefresh = [] }
        let memberships = local.withMembership { $0.groups.mapValues { Array($0.keys) } }
        let now = String(WallClock.now())
        var byHost: [Int: [RedisCommand]] = [:]
        for (group, channels) in memberships where !channels.isEmpty {
            let key = CoreWire.groupKey(prefix: configuration.prefix, group: group)
            let host = ShardRing.index(of: group, hostCount: clients.count)
            for chunk in stride(from: 0, to: channels.count, by: 1000) {
                let part = channels[chunk..<min(chunk + 1000, channels.count)]
                byHost[host, default: []].append(
                    RedisCommand("ZADD", arguments: [.string(key)] + part.flatMap { [.string(now), .string($0)] as [RedisArgument] })
                )
            }
            byHost[host, default: []].append(RedisCommand("EXPIRE", .string(key), .integer(groupExpirySeconds)))
        }
        for (host, commands) in byHost {
            do {
                _ = try await clients[host].pipeline(commands).checked("writing memberships")
            } catch {
                logger.warning("could not write memberships again; retrying at the next refresh", metadata: ["error": "\(error.message)"])
            }
        }
        // A member that left while its membership was being written must not stay in Redis.
        let left = state.withLock { state in
            defer { state.leftDuringRefresh = nil }
            return state.leftDuringRefresh ?? []
        }
        await removeFromRedis(left)
    }

    /// Takes `channel` out of `groups` locally and in the registry.
    private func forget(_ groups: some Collection<String>, channel: String) {
        let left = local.withMembership { membership in
            _ = membership.removePresence(of: channel, in: groups)
            return groups.filter { membership.leave($0, channel: channel).wasMember }
        }
        state.withLock { state in
            for group in left { state.leftDuringRefresh?.append((group, channel)) }
        }
        for group in left where isListed(group) { registry?.enqueue(.leave(group: group, channel: channel)) }
    }

    private func removeFromRedis(_ memberships: [(group: String, channel: String)]) async {
        var byHost: [Int: [RedisCommand]] = [:]
        for (group, channel) in memberships {
            byHost[ShardRing.index(of: group, hostCount: clients.count), default: []].append(
                RedisCommand("ZREM", .string(CoreWire.groupKey(prefix: configuration.prefix, group: group)), .string(channel))
            )
        }
        for (host, commands) in byHost {
            do {
                _ = try await clients[host].pipeline(commands).checked("removing memberships")
            } catch {
                logger.warning(
                    "could not remove memberships from Redis; Django's group_send skips them once they expire",
                    metadata: ["error": "\(error.message)", "count": "\(commands.count)"]
                )
            }
        }
    }

    // MARK: - Internals

    private var expirySeconds: Int { max(1, Int(configuration.expiry.components.seconds)) }
    private var groupExpirySeconds: Int { max(1, Int(configuration.groupExpiry.components.seconds)) }

    private func groupClient(_ group: String) -> RedisClient {
        clients[ShardRing.index(of: group, hostCount: clients.count)]
    }

    private func isListed(_ group: String) -> Bool {
        !configuration.unlistedGroupPrefixes.contains { group.hasPrefix($0) }
    }

    private func snapshot() -> MembershipRegistry.Snapshot {
        local.registrySnapshot(listed: isListed, connections: connectionCount())
    }
}
