import DequeModule

/// What a ``RedisSubscriber`` knows: the channels and patterns it holds or wants, its live connection, the
/// confirmations Redis owes it in the order the commands were written, the calls waiting for a connection,
/// and the health check. No I/O: each call says what the subscriber must do (write a command, resume or
/// fail a caller, close the connection), and the subscriber does it.
///
/// Callers waiting on a change are named by numbers this machine hands out; the subscriber keeps their
/// continuations. Connections are numbered too, so that replies from a connection that was already replaced
/// are ignored.
struct SubscriptionStateMachine {
    /// A command Redis confirms name by name (or with one `PONG`).
    enum Kind: String {
        case subscribe, unsubscribe, psubscribe, punsubscribe, ssubscribe, sunsubscribe, pong

        var subscribes: Bool { self == .subscribe || self == .psubscribe || self == .ssubscribe }
        var unsubscribes: Bool { self == .unsubscribe || self == .punsubscribe || self == .sunsubscribe }
        var command: String { rawValue.uppercased() }
    }

    /// Who hears when a confirmation completes.
    enum Completion: Hashable {
        /// A caller of ``request(_:_:)``.
        case waiter(Int)
        /// The restoring of every subscription on a new connection.
        case restore
        case none
    }

    struct Confirmation {
        let kind: Kind
        var remaining: Int
        let names: [String]
        let completion: Completion
    }

    /// Whether channels are shard channels: one `SSUBSCRIBE` per slot when restoring.
    let sharded: Bool
    /// Whether calls fail at once while Redis is known to be unreachable instead of waiting for it.
    let failsWhileUnreachable: Bool

    private(set) var channels: Set<String> = []
    private(set) var patterns: Set<String> = []
    /// The live connection's number.
    private(set) var connection: Int?
    private(set) var readingPaused = false
    private(set) var stopped = false
    private(set) var statistics = RedisSubscriber.Statistics()
    /// Why the live connection is failing, once known (a protocol error, a missed `PONG`).
    private(set) var failure: RedisError?
    private var confirmations: Deque<Confirmation> = []
    /// Subscribe calls waiting for a connection, oldest first, and what each asked for.
    private var awaiting: [(waiter: Int, kind: Kind, names: [String])] = []
    /// Why the last connection attempt failed, while no connection is up.
    private var unreachable: RedisError?
    private var pongOutstanding = false
    private var nextNumber = 0

    init(sharded: Bool, failsWhileUnreachable: Bool) {
        self.sharded = sharded
        self.failsWhileUnreachable = failsWhileUnreachable
    }

    /// A fresh number for a connection.
    mutating func connectionNumber() -> Int {
        defer { nextNumber += 1 }
        return nextNumber
    }

    // MARK: - Callers

    enum Request: Equatable {
        case fail(RedisError)
        /// Done already (an unsubscribe while disconnected).
        case succeed
        /// Write the command on the live connection; the caller waits as `waiter`.
        case write(waiter: Int)
        /// Wait as `waiter` for the next connection, which restores everything.
        case wait(waiter: Int)
    }

    /// Records a change of the wanted set and says what to do.
    mutating func request(_ kind: Kind, _ names: [String], address: String) -> Request {
        if stopped { return .fail(RedisError(.clientClosed, "the subscriber has stopped; create a new one")) }
        if failsWhileUnreachable, connection == nil, let unreachable, kind.subscribes {
            return .fail(Self.unreachableError(unreachable, kind: kind, address: address))
        }
        switch kind {
        case .subscribe, .ssubscribe: channels.formUnion(names)
        case .unsubscribe, .sunsubscribe: channels.subtract(names)
        case .psubscribe: patterns.formUnion(names)
        case .punsubscribe: patterns.subtract(names)
        case .pong: break
        }
        let waiter = nextNumber
        nextNumber += 1
        if connection != nil {
            confirmations.append(Confirmation(kind: kind, remaining: names.count, names: names, completion: .waiter(waiter)))
            return .write(waiter: waiter)
        }
        // No connection: an unsubscribe is already true; a subscribe waits for the next connection.
        if kind.unsubscribes { return .succeed }
        awaiting.append((waiter, kind, names))
        return .wait(waiter: waiter)
    }

    /// A caller's time ran out; whether it was still waiting for a connection (it no longer is).
    mutating func timedOut(_ waiter: Int) {
        awaiting.removeAll { $0.waiter == waiter }
    }

    // MARK: - Replies on a connection

    enum Confirmed: Equatable {
        case none
        case complete(Completion)
        case protocolError(RedisError)
    }

    /// Redis confirmed one name of the oldest pending command (or answered a `PING`).
    mutating func confirm(_ kind: Kind, connection number: Int) -> Confirmed {
        guard connection == number else { return .none }
        guard var head = confirmations.first, head.kind == kind else {
            return .protocolError(RedisError(.protocolError, "Redis confirmed \(kind.rawValue) which was not pending"))
        }
        if kind == .pong { pongOutstanding = false }
        head.remaining -= 1
        if head.remaining > 0 {
            confirmations[confirmations.startIndex] = head
            return .none
        }
        confirmations.removeFirst()
        return .complete(head.completion)
    }

    enum ShardUnsubscribe: Equatable {
        case stale
        /// The confirmation of our `SUNSUBSCRIBE`.
        case ours(Confirmed)
        /// Redis dropped the channel by itself (its slot moved, or the node is no longer a primary).
        case byServer
    }

    mutating func shardUnsubscribed(_ channel: String, connection number: Int) -> ShardUnsubscribe {
        guard connection == number else { return .stale }
        if let head = confirmations.first, head.kind == .sunsubscribe, head.names.contains(channel) {
            return .ours(confirm(.sunsubscribe, connection: number))
        }
        channels.remove(channel)
        return .byServer
    }

    enum Refused: Equatable {
        case stale
        /// Redis refused the oldest pending command: fail its completion.
        case refused(Completion, Kind)
        case unexpected
    }

    /// Redis answered the oldest pending command with an error (an ACL rule refusing a channel).
    mutating func refused(connection number: Int) -> Refused {
        guard connection == number else { return .stale }
        guard let head = confirmations.popFirst() else { return .unexpected }
        // A refused subscription must not be retried forever after reconnects.
        switch head.kind {
        case .subscribe, .ssubscribe: channels.subtract(head.names)
        case .psubscribe: patterns.subtract(head.names)
        default: break
        }
        return .refused(head.completion, head.kind)
    }

    mutating func recordFailure(_ error: RedisError, connection number: Int) {
        if connection == number, failure == nil { failure = error }
    }

    mutating func received(_ count: Int) {
        statistics.messagesReceived += count
    }

    // MARK: - Reading

    /// The consumer fell behind: stop reading the live connection (whether it is still the live one).
    mutating func pauseReading(connection number: Int) -> Bool {
        guard connection == number else { return false }
        readingPaused = true
        return true
    }

    mutating func resumeReading() {
        readingPaused = false
    }

    // MARK: - Connections

    /// What a new connection must do to hold everything wanted.
    struct Restore {
        /// Commands to write, in order; the last one's confirmation completes ``Completion/restore``.
        var commands: [(kind: Kind, names: [String])]
        var patternCount: Int
        var readingPaused: Bool
        /// Callers that waited for a connection: they succeed once the restore is confirmed.
        var waiting: [Int]

        var channelCount: Int { commands.filter { $0.kind != .psubscribe }.reduce(0) { $0 + $1.names.count } }
    }

    /// Makes `number` the live connection.
    mutating func attached(connection number: Int) -> Restore {
        connection = number
        failure = nil
        unreachable = nil
        pongOutstanding = false
        // Redis confirms each name separately; chunks keep each command a sane size. Shard channels go one
        // slot per command.
        let channelList = Array(channels)
        let channelChunks: [(Kind, [String])] =
            sharded
            ? RedisSubscriber.bySlot(channelList).flatMap { $0.chunked(1000) }.map { (.ssubscribe, Array($0)) }
            : channelList.chunked(1000).map { (.subscribe, Array($0)) }
        let commands = channelChunks + Array(patterns).chunked(1000).map { (Kind.psubscribe, Array($0)) }
        for (index, (kind, names)) in commands.enumerated() {
            let last = index == commands.count - 1
            confirmations.append(Confirmation(kind: kind, remaining: names.count, names: names, completion: last ? .restore : .none))
        }
        let waiting = awaiting.map(\.waiter)
        awaiting = []
        return Restore(commands: commands.map { (kind: $0.0, names: $0.1) }, patternCount: patterns.count, readingPaused: readingPaused, waiting: waiting)
    }

    /// What losing a connection settles.
    struct Detach {
        var error: RedisError
        /// Unsubscribe callers: the subscription ended with the connection, which is what they asked.
        var succeed: [Int]
        /// Whether a restore was under way (it failed).
        var failRestore: Bool
    }

    /// The live connection `number` is gone; `nil` when it was not the live one.
    mutating func detached(connection number: Int, address: String) -> Detach? {
        guard connection == number else { return nil }
        connection = nil
        statistics.connectionsLost += 1
        let error = failure ?? RedisError(.connectionClosed, "the pub/sub connection to Redis at \(address) was lost")
        var detach = Detach(error: error, succeed: [], failRestore: false)
        // Pending subscribes wait for the next connection, which restores them.
        for confirmation in confirmations {
            switch (confirmation.kind, confirmation.completion) {
            case (let kind, .waiter(let waiter)) where kind.subscribes: awaiting.append((waiter, kind, confirmation.names))
            case (let kind, .waiter(let waiter)) where kind.unsubscribes: detach.succeed.append(waiter)
            case (_, .restore): detach.failRestore = true
            default: break
            }
        }
        confirmations.removeAll()
        return detach
    }

    mutating func reconnected() {
        statistics.resubscriptions += 1
    }

    /// A connection attempt failed. Returns the callers to fail now (when failing while unreachable): their
    /// names are taken back, since they are told the subscription was not made.
    mutating func connectFailed(_ error: RedisError) -> [Int] {
        statistics.connectFailures += 1
        guard failsWhileUnreachable, connection == nil else { return [] }
        unreachable = error
        for entry in awaiting {
            if entry.kind == .psubscribe { patterns.subtract(entry.names) } else { channels.subtract(entry.names) }
        }
        defer { awaiting = [] }
        return awaiting.map(\.waiter)
    }

    enum Health: Equatable {
        /// The connection was replaced: stop checking it.
        case stop
        /// The consumer is behind and reading paused: a missing `PONG` proves nothing.
        case skip
        case ping
        /// The last `PING` went unanswered: close the connection.
        case dead
    }

    mutating func healthCheck(connection number: Int, unanswered: @autoclosure () -> RedisError) -> Health {
        guard connection == number else { return .stop }
        if readingPaused { return .skip }
        if pongOutstanding {
            failure = unanswered()
            return .dead
        }
        pongOutstanding = true
        confirmations.append(Confirmation(kind: .pong, remaining: 1, names: [], completion: .none))
        return .ping
    }

    /// The subscriber stops: returns every caller still waiting on a connection (the subscriber fails them
    /// with the others it holds).
    mutating func stop() {
        stopped = true
        awaiting = []
    }

    static func unreachableError(_ cause: RedisError, kind: Kind, address: String) -> RedisError {
        // Never `timeout`: callers read that as "requested, made when Redis is back", and this was not kept.
        RedisError(
            cause.code == .connectionRefused ? .connectionRefused : .connectionFailed,
            "Redis at \(address) cannot be reached (\(cause.message)); \(kind.command) was not made, try again when it is back"
        ).notSent()
    }
}

extension Array {
    func chunked(_ size: Int) -> [ArraySlice<Element>] {
        stride(from: 0, to: count, by: size).map { self[$0..<Swift.min($0 + size, count)] }
    }
}
