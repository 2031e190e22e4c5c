import Logging
import NIOCore
import NIOPosix
import Synchronization

/// A client for Redis Cluster: each command goes to the primary of its key's slot.
///
/// The slot map comes from `CLUSTER SLOTS`, asked of the known primaries and then the seeds. It is asked
/// again when a reply says `MOVED` (the command is then sent where the reply says), when a primary cannot
/// be reached (a failover: the command is retried once the map names a new primary, for up to
/// ``retryWindow``), and by ``refreshTopology()``. `ASK` redirections (a slot being migrated) are followed
/// with `ASKING` for that one command.
///
/// One pipelined ``RedisClient`` per primary; credentials, database-less settings and timeouts come
/// from the seed configuration.
public final class RedisClusterClient: RedisCommandSender {
    private struct State {
        var topology: RedisClusterTopology?
        var clients: [RedisClusterTopology.Node: RedisClient] = [:]
        var refresh: Task<Result<RedisClusterTopology, RedisError>, Never>?
        var closed = false
    }

    /// The seed nodes' configuration (the first one's credentials and timeouts are used for every node).
    public let seeds: [RedisConfiguration]
    /// How long a command keeps being retried while its slot has no reachable primary.
    public let retryWindow: Duration
    private let reconnectPolicy: RedisReconnectPolicy
    private let eventLoopGroup: any EventLoopGroup
    private let logger: Logger
    private let state = Mutex(State())
    private let refreshes = Atomic<Int>(0)

    /// Creates a client; it connects on first use.
    /// - Throws: ``RedisError/Code/invalidURL`` when there is no seed or a seed is a Unix socket.
    public init(
        seeds: [RedisConfiguration],
        retryWindow: Duration = .seconds(10),
        reconnectPolicy: RedisReconnectPolicy = RedisReconnectPolicy(initialDelay: .milliseconds(50), maximumDelay: .seconds(1)),
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "HiredisClient.cluster")
    ) throws(RedisError) {
        guard !seeds.isEmpty else { throw RedisError(.invalidURL, "a Redis Cluster client needs at least one seed node HOST:PORT") }
        for seed in seeds {
            guard case .tcp = seed.address else {
                throw RedisError(.invalidURL, "Redis Cluster seed \(seed.address) is not HOST:PORT; cluster nodes are reached over TCP")
            }
        }
        self.seeds = seeds
        self.retryWindow = retryWindow
        self.reconnectPolicy = reconnectPolicy
        self.eventLoopGroup = eventLoopGroup
        self.logger = logger
    }

    /// Parses seeds given as `HOST:PORT` or `redis://[user:password@]HOST:PORT` (the first one's user and
    /// password apply to all).
    public static func seeds(from texts: [String]) throws(RedisError) -> [RedisConfiguration] {
        var seeds: [RedisConfiguration] = []
        for text in texts {
            var configuration = try RedisConfiguration(url: text.contains("://") ? text : "redis://\(text)")
            if let first = seeds.first {
                configuration.username = configuration.username ?? first.username
                configuration.password = configuration.password ?? first.password
            }
            guard configuration.database == 0 else {
                throw RedisError(.invalidURL, "Redis Cluster has only database 0; remove /\(configuration.database) from \(RedisConfiguration.redact(text))")
            }
            seeds.append(configuration)
        }
        return seeds
    }

    /// The slot map last read, if any.
    public var topology: RedisClusterTopology? { state.withLock { $0.topology } }

    /// How many times the slot map was read.
    public var topologyRefreshes: Int { refreshes.load(ordering: .relaxed) }

    /// The slot map, read once when there is none yet.
    public func currentTopology() async throws(RedisError) -> RedisClusterTopology {
        if let topology = state.withLock({ $0.topology }) { return topology }
        return try await refreshTopology()
    }

    /// Reads the slot map again (concurrent callers share one read).
    @discardableResult
    public func refreshTopology() async throws(RedisError) -> RedisClusterTopology {
        let task: Task<Result<RedisClusterTopology, RedisError>, Never> = state.withLock { state in
            if let running = state.refresh { return running }
            let candidates = (state.topology?.primaries ?? []).map { node in self.configuration(for: node) } + seeds
            let task = Task { [self] () -> Result<RedisClusterTopology, RedisError> in
                var lastError = RedisError(.connectionFailed, "no Redis Cluster node answered CLUSTER SLOTS")
                for candidate in candidates {
                    do throws(RedisError) {
                        let connection = try await RedisConnection.connect(configuration: candidate, eventLoopGroup: eventLoopGroup, logger: logger)
                        defer { Task { await connection.close() } }
                        let topology = try RedisClusterTopology(slotsReply: try await connection.send(RedisCommand("CLUSTER", "SLOTS")))
                        guard !topology.primaries.isEmpty else {
                            lastError = RedisError(.connectionFailed, "\(candidate.address) serves no slots; is the cluster created (redis-cli --cluster create)?")
                            continue
                        }
                        return .success(topology)
                    } catch {
                        lastError = error
                        if !error.isRetryable { return .failure(error) }
                    }
                }
                return .failure(lastError)
            }
            state.refresh = task
            return task
        }
        let result = await task.value
        let previous: RedisClusterTopology? = state.withLock { state in
            if state.refresh == task { state.refresh = nil }
            let previous = state.topology
            if case .success(let topology) = result { state.topology = topology }
            return previous
        }
        refreshes.add(1, ordering: .relaxed)
        let topology = try result.get()
        if previous != topology {
            logger.info("Redis Cluster slot map", metadata: ["primaries": "\(topology.primaries)", "complete": "\(topology.isComplete)"])
        }
        return topology
    }

    /// The command client of a primary.
    public func client(for node: RedisClusterTopology.Node) -> RedisClient {
        state.withLock { state in
            if let client = state.clients[node] { return client }
            let client = RedisClient(configuration: configuration(for: node), reconnectPolicy: reconnectPolicy, eventLoopGroup: eventLoopGroup, logger: logger)
            state.clients[node] = client
            return client
        }
    }

    /// A seed's settings pointed at `node`.
    public func configuration(for node: RedisClusterTopology.Node) -> RedisConfiguration {
        var configuration = seeds[0]
        configuration.address = .tcp(host: node.host, port: node.port)
        return configuration
    }

    /// Sends a command to the primary of its key's slot (any primary for a command without a key).
    public func send(_ command: RedisCommand) async throws(RedisError) -> RedisReply {
        try await send(command, slot: command.routingKey.map(RedisClusterSlot.of))
    }

    /// Sends commands, each to the primary of its slot: one pipeline per primary, replies in order.
    ///
    /// A command redirected or refused by an unreachable primary is sent again on its own, as ``send(_:)``
    /// does; errors Redis returns for a command are returned in place, as ``RedisClient/pipeline(_:)`` does.
    public func pipeline(_ commands: [RedisCommand]) async throws(RedisError) -> [RedisReply] {
        guard !commands.isEmpty else { return [] }
        let topology = try await currentTopology()
        var byNode: [RedisClusterTopology.Node: [Int]] = [:]
        var unrouted: [Int] = []
        for (index, command) in commands.enumerated() {
            let slot = command.routingKey.map(RedisClusterSlot.of)
            if let node = slot.map({ topology.primary(forSlot: $0) }) ?? topology.primaries.first {
                byNode[node, default: []].append(index)
            } else {
                unrouted.append(index)
            }
        }
        var replies = [RedisReply](repeating: .null, count: commands.count)
        var retry = unrouted
        for (node, indices) in byNode {
            do {
                let answers = try await client(for: node).pipeline(indices.map { commands[$0] })
                for (position, index) in indices.enumerated() {
                    if case .error(let text) = answers[position], Self.isRedirection(text) {
                        retry.append(index)
                    } else {
                        replies[index] = answers[position]
                    }
                }
            } catch where Self.isUnreachable(error) {
                // A batch that may have run is sent again only when running it twice changes nothing.
                if error.mayHaveRun, indices.contains(where: { !Self.isRepeatable(commands[$0]) }) { throw error }
                retry += indices
            }
        }
        for index in retry.sorted() {
            do {
                replies[index] = try await send(commands[index])
            } catch where error.code == .errorReply {
                replies[index] = .error(error.serverMessage ?? error.message)
            }
        }
        return replies
    }

    /// Every primary's client, for commands each node answers for itself (`SCAN`).
    public func primaryClients() async throws(RedisError) -> [RedisClient] {
        try await currentTopology().primaries.map { client(for: $0) }
    }

    /// Closes every connection.
    public func close() async {
        let clients = state.withLock { state in
            state.closed = true
            return Array(state.clients.values)
        }
        for client in clients { await client.close() }
    }

    // MARK: - Routing

    private func send(_ command: RedisCommand, slot: Int?) async throws(RedisError) -> RedisReply {
        let deadline = ContinuousClock.now + retryWindow
        var attempt = 0
        var target: (node: RedisClusterTopology.Node, asking: Bool)?
        while true {
            attempt += 1
            let node: RedisClusterTopology.Node
            if let target {
                node = target.node
            } else {
                let topology = try await currentTopology()
                guard let owner = slot.map({ topology.primary(forSlot: $0) }) ?? topology.primaries.first else {
                    // The slot has no primary (a failover in progress): read the map again until one appears.
                    guard ContinuousClock.now < deadline else {
                        throw RedisError(.connectionFailed, "Redis Cluster has no primary for slot \(slot ?? -1) after \(retryWindow); check `redis-cli --cluster check`")
                    }
                    try? await Task.sleep(for: reconnectPolicy.delay(forAttempt: attempt))
                    _ = try? await refreshTopology()
                    continue
                }
                node = owner
            }
            do throws(RedisError) {
                if let target, target.asking {
                    let replies = try await client(for: node).pipeline([RedisCommand("ASKING"), command])
                    if case .error(let text) = replies[1] { throw RedisError.fromErrorReply(text, command: command.name) }
                    return replies[1]
                }
                return try await client(for: node).send(command)
            } catch {
                let text = error.serverMessage ?? ""
                if let redirection = Self.redirection(text), attempt < 6 {
                    // MOVED: the map is stale; ASK: one command goes to the importing node.
                    target = (redirection.node, redirection.asking)
                    if !redirection.asking { Task { _ = try? await self.refreshTopology() } }
                    continue
                }
                // Sent again only when it surely did not run, or running it twice changes nothing: a PUBLISH or
                // the history script that may have run is reported as such (`mayHaveRun`), never sent twice.
                if Self.isUnreachable(error), ContinuousClock.now < deadline, !error.mayHaveRun || Self.isRepeatable(command) {
                    target = nil
                    try? await Task.sleep(for: reconnectPolicy.delay(forAttempt: attempt))
                    _ = try? await refreshTopology()
                    continue
                }
                throw error
            }
        }
    }

    static func isRedirection(_ text: String) -> Bool { text.hasPrefix("MOVED ") || text.hasPrefix("ASK ") }

    /// Commands whose second run would deliver or count something twice.
    static let unrepeatable: Set<String> = ["PUBLISH", "SPUBLISH", "EVAL", "EVALSHA", "XADD", "INCR", "INCRBY", "HINCRBY", "LPUSH", "RPUSH", "ZINCRBY"]

    /// Whether running `command` again after a run whose outcome is unknown is harmless.
    static func isRepeatable(_ command: RedisCommand) -> Bool { !unrepeatable.contains(command.name.uppercased()) }

    /// `MOVED 3999 127.0.0.1:6381` or `ASK 3999 127.0.0.1:6381`.
    static func redirection(_ text: String) -> (node: RedisClusterTopology.Node, asking: Bool)? {
        let parts = text.split(separator: " ")
        guard parts.count >= 3, parts[0] == "MOVED" || parts[0] == "ASK", let colon = parts[2].lastIndex(of: ":"),
            let port = Int(parts[2][parts[2].index(after: colon)...])
        else { return nil }
        return (RedisClusterTopology.Node(host: String(parts[2][..<colon]), port: port), parts[0] == "ASK")
    }

    static func isUnreachable(_ error: RedisError) -> Bool {
        switch error.code {
        case .connectionRefused, .connectionFailed, .connectionClosed, .timeout: true
        case .errorReply: (error.serverMessage ?? "").hasPrefix("CLUSTERDOWN") || (error.serverMessage ?? "").hasPrefix("TRYAGAIN")
        default: false
        }
    }
}
