import DequeModule
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// A dedicated pub/sub connection that survives Redis restarts.
///
/// The subscriber keeps the set of channels and patterns it should hold. ``run()`` connects, subscribes to
/// all of them in one command each, and after any drop reconnects with backoff and subscribes again.
/// Messages arrive on ``messages`` with backpressure: when the consumer falls behind, the subscriber stops
/// reading the socket and Redis buffers for it. State changes arrive on ``events`` so that a layer above
/// can count and expose outages.
///
/// ```swift
/// let subscriber = RedisSubscriber(configuration: try RedisConfiguration(url: "redis://127.0.0.1:6379"))
/// try await withThrowingDiscardingTaskGroup { group in
///     group.addTask { try await subscriber.run() }
///     try await subscriber.subscribe(["news"])
///     for await message in subscriber.messages { print(message.channel, message.payload) }
/// }
/// ```
///
/// All changes to the subscription set run on one event loop, the one the connection lives on, so the
/// commands on the wire are always in the order the calls made them.
public final class RedisSubscriber: Sendable {
    /// A change of the subscriber's connection state.
    public enum Event: Sendable, Hashable {
        /// The first connection is up and every requested subscription is active.
        case connected
        /// The connection dropped; messages published until ``resubscribed(channels:patterns:)`` are lost.
        case connectionLost(RedisError)
        /// A connection attempt failed; the next one starts after `retryIn`.
        case connectFailed(RedisError, attempt: Int, retryIn: Duration)
        /// A new connection is up after a loss and every subscription is active again.
        case resubscribed(channels: Int, patterns: Int)
        /// ``run()`` ended: `nil` when cancelled, or the error that cannot be fixed by retrying (bad credentials).
        case stopped(RedisError?)
        /// Redis ended a shard channel subscription by itself (its slot moved to another node, or this node
        /// stopped being a primary); the channel is dropped from the set, to be subscribed where it now lives.
        case unsubscribedByServer(channel: String)
    }

    /// Counters since the subscriber was created.
    public struct Statistics: Sendable, Hashable {
        /// How many times an established connection was lost.
        public var connectionsLost = 0
        /// How many times subscriptions were restored on a new connection.
        public var resubscriptions = 0
        /// Messages received from Redis.
        public var messagesReceived = 0
        /// Failed connection attempts.
        public var connectFailures = 0
    }

    /// The messages received on every subscribed channel and pattern. Iterate it from one task only.
    public struct Messages: AsyncSequence, Sendable {
        public typealias Element = RedisPubSubMessage
        typealias Base = NIOAsyncSequenceProducer<
            RedisPubSubMessage, NIOAsyncSequenceProducerBackPressureStrategies.HighLowWatermark, ReadDemand
        >
        let base: Base

        public struct AsyncIterator: AsyncIteratorProtocol {
            var base: Base.AsyncIterator
            public mutating func next() async -> RedisPubSubMessage? { await base.next() }
        }

        public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(base: base.makeAsyncIterator()) }
    }

    enum ConfirmationKind: String {
        case subscribe, unsubscribe, psubscribe, punsubscribe, ssubscribe, sunsubscribe, pong

        var subscribes: Bool { self == .subscribe || self == .psubscribe || self == .ssubscribe }
    }

    /// Something waiting for Redis to confirm a command, in the order the commands were written.
    fileprivate struct Confirmation {
        let kind: ConfirmationKind
        var remaining: Int
        let names: [String]
        let completion: Completion
    }

    fileprivate enum Completion {
        case waiter(Int)
        case restore(EventLoopPromise<Void>)
        case none
    }

    fileprivate struct Waiter {
        let continuation: CheckedContinuation<Result<Void, RedisError>, Never>
        var timeout: Scheduled<Void>?
    }

    fileprivate struct State {
        var channels: Set<String> = []
        var patterns: Set<String> = []
        var connection: (id: Int, channel: any Channel)?
        var confirmations: Deque<Confirmation> = []
        var waiters: [Int: Waiter] = [:]
        /// Subscribe calls made while disconnected; they complete when the next connection restores them.
        var awaitingConnection: [Int] = []
        /// What each of ``awaitingConnection`` asked for, taken back if Redis turns out to be unreachable.
        var awaitingNames: [Int: (kind: ConfirmationKind, names: [String])] = [:]
        /// Why the last connection attempt failed, while no connection is up: subscribes fail at once then
        /// instead of waiting for a Redis that is known to be down.
        var unreachable: RedisError?
        var nextID = 0
        var readingPaused = false
        var pongOutstanding = false
        var failure: RedisError?
        var statistics = Statistics()
        var running = false
        var stopped = false
    }

    /// Resumes reading the socket when the message consumer wants more.
    struct ReadDemand: NIOAsyncSequenceProducerDelegate {
        let eventLoop: any EventLoop
        let state: StateBox

        func produceMore() {
            eventLoop.execute {
                let channel = state.mutex.withLock { state -> (any Channel)? in
                    state.readingPaused = false
                    return state.connection?.channel
                }
                channel?.setOption(.autoRead, value: true).whenSuccess { channel?.read() }
            }
        }

        func didTerminate() {}
    }

    final class StateBox: Sendable {
        fileprivate let mutex = Mutex(State())
    }

    /// The connection settings.
    public let configuration: RedisConfiguration
    /// The reconnection backoff.
    public let reconnectPolicy: RedisReconnectPolicy
    /// How often an idle connection is checked with `PING`; `nil` turns the check off.
    public let healthCheckInterval: Duration?
    /// Received messages (unused when the subscriber was made with a message handler).
    public let messages: Messages
    /// Whether channels are shard channels (`SSUBSCRIBE`, Redis 7 Cluster): one command per slot.
    public let sharded: Bool

    /// Takes the messages of one socket read, on the subscriber's event loop; returns `false` to stop
    /// reading until ``resumeReading()``.
    public typealias MessageHandler = @Sendable ([RedisPubSubMessage]) -> Bool
    /// Connection state changes (the newest 256 are kept for a slow reader).
    public let events: AsyncStream<Event>

    private let eventLoop: any EventLoop
    private let handler: MessageHandler?
    private let box = StateBox()
    private let failsWhileUnreachable: Bool
    private let source: Messages.Base.Source
    private let eventContinuation: AsyncStream<Event>.Continuation
    private let logger: Logger

    /// Creates a subscriber; nothing connects until ``run()``.
    /// - Parameters:
    ///   - failsWhileUnreachable: once a connection attempt has failed, and until one succeeds, subscribe
    ///     calls fail at once (``RedisError/mayHaveRun`` false, the names not kept) instead of waiting for
    ///     Redis to come back: a server that must answer its own clients now (a WebSocket node refusing a
    ///     handshake) wants that. Calls already waiting fail too.
    ///   - onMessages: takes messages straight from the event loop, in the order Redis sent them,
    ///     instead of ``messages``: no task hop. Return `false` from it to stop reading the socket (Redis then
    ///     buffers for this subscriber) until ``resumeReading()``.
    public init(
        configuration: RedisConfiguration,
        reconnectPolicy: RedisReconnectPolicy = RedisReconnectPolicy(),
        healthCheckInterval: Duration? = .seconds(5),
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "HiredisClient.subscriber"),
        sharded: Bool = false,
        failsWhileUnreachable: Bool = false,
        onMessages: MessageHandler? = nil
    ) {
        self.failsWhileUnreachable = failsWhileUnreachable
        self.configuration = configuration
        self.sharded = sharded
        self.handler = onMessages
        self.reconnectPolicy = reconnectPolicy
        self.healthCheckInterval = healthCheckInterval
        self.logger = logger
        self.eventLoop = eventLoopGroup.next()
        let sequence = Messages.Base.makeSequence(
            backPressureStrategy: .init(lowWatermark: 1024, highWatermark: 8192),
            finishOnDeinit: false,
            delegate: ReadDemand(eventLoop: eventLoop, state: box)
        )
        self.messages = Messages(base: sequence.sequence)
        self.source = sequence.source
        (self.events, self.eventContinuation) = AsyncStream.makeStream(of: Event.self, bufferingPolicy: .bufferingNewest(256))
    }

    // MARK: - Subscriptions

    /// Subscribes to channels, in one `SUBSCRIBE` command, and returns once Redis confirmed all of them.
    ///
    /// While Redis is unreachable the channels are kept and the call waits for the next connection,
    /// at most the command timeout (or the connect timeout when there is none), unless the subscriber
    /// ``init(configuration:reconnectPolicy:healthCheckInterval:eventLoopGroup:logger:sharded:failsWhileUnreachable:onMessages:)``
    /// was made to fail while Redis is known to be unreachable.
    /// - Throws: ``RedisError/Code/timeout`` (the subscription stays requested and is made when Redis
    ///   is back: call ``unsubscribe(_:)`` to drop it), ``RedisError/Code/errorReply`` (for example an ACL
    ///   refusal; the channels are dropped), ``RedisError/Code/clientClosed``.
    ///
    /// A sharded subscriber sends `SSUBSCRIBE`, one command per slot.
    public func subscribe(_ channels: some Sequence<String>) async throws(RedisError) {
        if sharded {
            for group in Self.bySlot(channels) { try await change(.ssubscribe, group) }
        } else {
            try await change(.subscribe, Array(channels))
        }
    }

    /// Unsubscribes from channels; returns once Redis confirmed, or at once when disconnected.
    public func unsubscribe(_ channels: some Sequence<String>) async throws(RedisError) {
        if sharded {
            for group in Self.bySlot(channels) { try await change(.sunsubscribe, group) }
        } else {
            try await change(.unsubscribe, Array(channels))
        }
    }

    /// Shard channels grouped by slot: `SSUBSCRIBE` refuses channels of several slots in one command.
    static func bySlot(_ channels: some Sequence<String>) -> [[String]] {
        Array(Dictionary(grouping: channels, by: { RedisClusterSlot.of($0) }).values)
    }

    /// Subscribes to glob-style patterns (`PSUBSCRIBE`), like ``subscribe(_:)``.
    public func psubscribe(_ patterns: some Sequence<String>) async throws(RedisError) {
        try await change(.psubscribe, Array(patterns))
    }

    /// Unsubscribes from patterns (`PUNSUBSCRIBE`), like ``unsubscribe(_:)``.
    public func punsubscribe(_ patterns: some Sequence<String>) async throws(RedisError) {
        try await change(.punsubscribe, Array(patterns))
    }

    /// The channels the subscriber holds or will hold once connected.
    public var channels: Set<String> { box.mutex.withLock { $0.channels } }
    /// The patterns the subscriber holds or will hold once connected.
    public var patterns: Set<String> { box.mutex.withLock { $0.patterns } }
    /// Whether a connection is up and subscribed.
    public var isConnected: Bool { box.mutex.withLock { $0.connection != nil } }
    /// Counters since creation.
    public var statistics: Statistics { box.mutex.withLock { $0.statistics } }

    // MARK: - Running

    /// Connects and keeps the subscriptions alive until the task is cancelled.
    ///
    /// Returns normally when cancelled. Reconnects after every loss with ``reconnectPolicy``.
    /// - Throws: an error that retrying cannot fix, such as ``RedisError/Code/authenticationFailed``:
    ///   the subscriber stops at once instead of hammering Redis with a wrong password.
    public func run() async throws(RedisError) {
        let alreadyRunning = box.mutex.withLock { state in
            defer { state.running = true }
            return state.running || state.stopped
        }
        guard !alreadyRunning else {
            throw RedisError(.clientClosed, "RedisSubscriber.run() was called twice; a subscriber runs once")
        }
        var fatal: RedisError?
        var attempt = 0
        var everConnected = false
        while !Task.isCancelled {
            do {
                let connection = try await RedisConnection.connect(
                    configuration: configuration, eventLoopGroup: eventLoop, logger: logger
                )
                let id = box.mutex.withLock { state in
                    defer { state.nextID += 1 }
                    return state.nextID
                }
                try await connection.becomeSubscriber { RedisPubSubHandler(subscriber: self, connectionID: id) }
                let restored = try await attach(connection.channel, id: id)
                attempt = 0
                if everConnected {
                    box.mutex.withLock { $0.statistics.resubscriptions += 1 }
                    eventContinuation.yield(.resubscribed(channels: restored.channels, patterns: restored.patterns))
                    logger.info("resubscribed after reconnecting", metadata: ["channels": "\(restored.channels)", "patterns": "\(restored.patterns)"])
                } else {
                    eventContinuation.yield(.connected)
                }
                everConnected = true
                await withTaskCancellationHandler {
                    await connection.closed()
                } onCancel: {
                    connection.channel.close(promise: nil)
                }
                let error = await detach(id: id)
                if Task.isCancelled { break }
                logger.warning("Redis pub/sub connection lost", metadata: ["error": "\(error.message)"])
                eventContinuation.yield(.connectionLost(error))
            } catch {
                if Task.isCancelled { break }
                guard error.isRetryable else {
                    fatal = error
                    break
                }
                attempt += 1
                let delay = reconnectPolicy.delay(forAttempt: attempt)
                box.mutex.withLock { $0.statistics.connectFailures += 1 }
                if failsWhileUnreachable { failAwaitingConnection(error) }
                eventContinuation.yield(.connectFailed(error, attempt: attempt, retryIn: delay))
                logger.debug("Redis pub/sub connect failed", metadata: ["error": "\(error.message)", "retry_in": "\(delay)"])
                do { try await Task.sleep(for: delay) } catch { break }
            }
        }
        await stop(fatal)
        if let fatal { throw fatal }
    }

    // MARK: - Called by the handler, on the event loop

    /// Returns whether to keep reading.
    func deliver(_ batch: [RedisPubSubMessage]) -> Bool {
        box.mutex.withLock { $0.statistics.messagesReceived += batch.count }
        if let handler { return handler(batch) }
        return source.yield(contentsOf: batch) != .stopProducing
    }

    /// Reads the socket again after the message handler returned `false`.
    public func resumeReading() {
        ReadDemand(eventLoop: eventLoop, state: box).produceMore()
    }

    /// The event loop the connection and the message handler run on.
    public var connectionEventLoop: any EventLoop { eventLoop }

    func pauseReading(channel: any Channel, connectionID: Int) {
        let current = box.mutex.withLock { state -> Bool in
            guard state.connection?.id == connectionID else { return false }
            state.readingPaused = true
            return true
        }
        if current { try? channel.syncOptions?.setOption(.autoRead, value: false) }
    }

    func recordFailure(_ error: RedisError, connectionID: Int) {
        box.mutex.withLock { state in
            if state.connection?.id == connectionID, state.failure == nil { state.failure = error }
        }
    }

    func confirm(_ kind: ConfirmationKind, connectionID: Int) throws(RedisError) {
        let (completion, error): (Completion?, RedisError?) = box.mutex.withLock { state in
            guard state.connection?.id == connectionID else { return (nil, nil) }
            guard var head = state.confirmations.first, head.kind == kind else {
                return (nil, RedisError(.protocolError, "Redis confirmed \(kind.rawValue) which was not pending"))
            }
            if kind == .pong { state.pongOutstanding = false }
            head.remaining -= 1
            if head.remaining > 0 {
                state.confirmations[state.confirmations.startIndex] = head
                return (nil, nil)
            }
            state.confirmations.removeFirst()
            return (head.completion, nil)
        }
        if let error { throw error }
        if let completion { complete(completion, with: .success(())) }
    }

    /// A `sunsubscribe` reply: the confirmation of ours, or Redis dropping the channel by itself (its slot
    /// moved, or this node is no longer a primary).
    func shardUnsubscribed(_ channel: String, connectionID: Int) throws(RedisError) {
        let ours = box.mutex.withLock { state -> Bool? in
            guard state.connection?.id == connectionID else { return nil }
            if let head = state.confirmations.first, head.kind == .sunsubscribe, head.names.contains(channel) { return true }
            state.channels.remove(channel)
            return false
        }
        switch ours {
        case true?: try confirm(.sunsubscribe, connectionID: connectionID)
        case false?: eventContinuation.yield(.unsubscribedByServer(channel: channel))
        case nil: break
        }
    }

    func confirmError(_ text: String, connectionID: Int) throws(RedisError) {
        let failed: Confirmation? = box.mutex.withLock { state in
            guard state.connection?.id == connectionID, let head = state.confirmations.popFirst() else { return nil }
            // A refused SUBSCRIBE (an ACL channel rule, say) must not be retried forever after reconnects.
            switch head.kind {
            case .subscribe, .ssubscribe: state.channels.subtract(head.names)
            case .psubscribe: state.patterns.subtract(head.names)
            default: break
            }
            return head
        }
        guard let failed else {
            throw RedisError(.protocolError, "Redis sent an error nobody waited for: \(text)")
        }
        complete(failed.completion, with: .failure(RedisError.fromErrorReply(text, command: failed.kind.rawValue.uppercased())))
    }

    // MARK: - Internals

    private func change(_ kind: ConfirmationKind, _ names: [String]) async throws(RedisError) {
        guard !names.isEmpty else { return }
        let result = await withCheckedContinuation { (continuation: CheckedContinuation<Result<Void, RedisError>, Never>) in
            eventLoop.execute { [self] in
                apply(kind, names, continuation: continuation)
            }
        }
        try result.get()
    }

    /// Runs on ``eventLoop``: records the change, then writes it if connected.
    private func apply(
        _ kind: ConfirmationKind,
        _ names: [String],
        continuation: CheckedContinuation<Result<Void, RedisError>, Never>
    ) {
        enum Action {
            case fail(RedisError)
            case succeed
            case write(any Channel, waiter: Int)
            case wait(waiter: Int)
        }
        let action: Action = box.mutex.withLock { state in
            if state.stopped {
                return .fail(RedisError(.clientClosed, "the subscriber has stopped; create a new one"))
            }
            if failsWhileUnreachable, state.connection == nil, let unreachable = state.unreachable, kind.subscribes {
                return .fail(Self.unreachableError(unreachable, kind: kind, address: configuration.address))
            }
            switch kind {
            case .subscribe, .ssubscribe: state.channels.formUnion(names)
            case .unsubscribe, .sunsubscribe: state.channels.subtract(names)
            case .psubscribe: state.patterns.formUnion(names)
            case .punsubscribe: state.patterns.subtract(names)
            case .pong: break
            }
            let id = state.nextID
            state.nextID += 1
            if let connection = state.connection {
                state.waiters[id] = Waiter(continuation: continuation)
                state.confirmations.append(Confirmation(kind: kind, remaining: names.count, names: names, completion: .waiter(id)))
                return .write(connection.channel, waiter: id)
            }
            // No connection: an unsubscribe is already true; a subscribe waits for the next connection.
            if kind == .unsubscribe || kind == .punsubscribe || kind == .sunsubscribe { return .succeed }
            state.waiters[id] = Waiter(continuation: continuation)
            state.awaitingConnection.append(id)
            state.awaitingNames[id] = (kind, names)
            return .wait(waiter: id)
        }
        switch action {
        case .fail(let error):
            continuation.resume(returning: .failure(error))
        case .succeed:
            continuation.resume(returning: .success(()))
        case .write(let channel, let id):
            armTimeout(waiter: id, kind: kind)
            channel.writeAndFlush(RedisCommand(kind.rawValue.uppercased(), arguments: names.map { .string($0) }).encoded, promise: nil)
        case .wait(let id):
            armTimeout(waiter: id, kind: kind)
        }
    }

    /// A connection attempt failed: subscribes waiting for a connection fail now with the reason (their
    /// names are taken back: the caller was told they were not made), and so do new ones until Redis answers.
    private func failAwaitingConnection(_ error: RedisError) {
        let failed: [Waiter] = box.mutex.withLock { state in
            guard state.connection == nil else { return [] }
            state.unreachable = error
            var failed: [Waiter] = []
            for id in state.awaitingConnection {
                if let (kind, names) = state.awaitingNames[id] {
                    if kind == .psubscribe { state.patterns.subtract(names) } else { state.channels.subtract(names) }
                }
                if let waiter = state.waiters.removeValue(forKey: id) { failed.append(waiter) }
            }
            state.awaitingConnection = []
            state.awaitingNames = [:]
            return failed
        }
        let refused = Self.unreachableError(error, kind: .subscribe, address: configuration.address)
        for waiter in failed {
            waiter.timeout?.cancel()
            waiter.continuation.resume(returning: .failure(refused))
        }
    }

    private static func unreachableError(_ cause: RedisError, kind: ConfirmationKind, address: RedisConfiguration.Address) -> RedisError {
        // Never `timeout`: callers read that as "requested, made when Redis is back", and this was not kept.
        RedisError(
            cause.code == .connectionRefused ? .connectionRefused : .connectionFailed,
            "Redis at \(address) cannot be reached (\(cause.message)); \(kind.rawValue.uppercased()) was not made, try again when it is back"
        ).notSent()
    }

    private func armTimeout(waiter id: Int, kind: ConfirmationKind) {
        let timeout = configuration.commandTimeout ?? configuration.connectTimeout
        let scheduled = eventLoop.scheduleTask(in: .nanoseconds(timeout.timeAmount)) { [self] in
            let waiter = box.mutex.withLock { state in
                state.awaitingConnection.removeAll { $0 == id }
                state.awaitingNames[id] = nil
                return state.waiters.removeValue(forKey: id)
            }
            waiter?.continuation.resume(
                returning: .failure(
                    RedisError(
                        .timeout,
                        "Redis at \(configuration.address) did not confirm \(kind.rawValue.uppercased()) within \(timeout); the subscription stays requested and is made when the connection is back"
                    )
                )
            )
        }
        box.mutex.withLock { state in state.waiters[id]?.timeout = scheduled }
    }

    private func complete(_ completion: Completion, with result: Result<Void, RedisError>) {
        switch completion {
        case .waiter(let id):
            let waiter = box.mutex.withLock { $0.waiters.removeValue(forKey: id) }
            waiter?.timeout?.cancel()
            waiter?.continuation.resume(returning: result)
        case .restore(let promise):
            switch result {
            case .success: promise.succeed()
            case .failure(let error): promise.fail(error)
            }
        case .none:
            break
        }
    }

    /// Makes `channel` the live connection and subscribes it to everything requested.
    private func attach(_ channel: any Channel, id: Int) async throws(RedisError) -> (channels: Int, patterns: Int) {
        let future = eventLoop.flatSubmit { [self] () -> EventLoopFuture<(channels: Int, patterns: Int)> in
            let promise = eventLoop.makePromise(of: Void.self)
            let (channels, patterns, paused, waiting) = box.mutex.withLock { state in
                state.connection = (id, channel)
                state.failure = nil
                state.unreachable = nil
                state.awaitingNames = [:]
                state.pongOutstanding = false
                let channels = Array(state.channels)
                let patterns = Array(state.patterns)
                // Redis confirms each name separately; chunking keeps each command a sane size. Shard
                // channels go one slot per command.
                let channelChunks =
                    sharded
                    ? Self.bySlot(channels).flatMap { $0.chunked(1000) }.map { (ConfirmationKind.ssubscribe, $0) }
                    : channels.chunked(1000).map { (ConfirmationKind.subscribe, $0) }
                let chunks = channelChunks + patterns.chunked(1000).map { (ConfirmationKind.psubscribe, $0) }
                for (index, (kind, names)) in chunks.enumerated() {
                    let last = index == chunks.count - 1
                    state.confirmations.append(
                        Confirmation(kind: kind, remaining: names.count, names: Array(names), completion: last ? .restore(promise) : .none)
                    )
                }
                let waiting = state.awaitingConnection
                state.awaitingConnection = []
                return (chunks, patterns.count, state.readingPaused, waiting)
            }
            if paused { try? channel.syncOptions?.setOption(.autoRead, value: false) }
            if channels.isEmpty {
                promise.succeed()
            } else {
                for (kind, names) in channels {
                    channel.write(RedisCommand(kind.rawValue.uppercased(), arguments: names.map { .string($0) }).encoded, promise: nil)
                }
                channel.flush()
            }
            startHealthCheck(channel, id: id)
            return promise.futureResult.map {
                for waiter in waiting { self.complete(.waiter(waiter), with: .success(())) }
                let channelCount = channels.filter { $0.0 != .psubscribe }.reduce(0) { $0 + $1.1.count }
                return (channelCount, patterns)
            }
        }
        do {
            return try await future.get()
        } catch {
            channel.close(promise: nil)
            throw (error as? RedisError) ?? RedisError(.connectionClosed, "restoring subscriptions failed: \(error)")
        }
    }

    /// Forgets the lost connection; returns why it was lost.
    private func detach(id: Int) async -> RedisError {
        let future = eventLoop.submit { [self] () -> RedisError in
            let (error, confirmations) = box.mutex.withLock { state -> (RedisError, Deque<Confirmation>) in
                guard state.connection?.id == id else {
                    return (RedisError(.connectionClosed, "connection replaced"), [])
                }
                state.connection = nil
                state.statistics.connectionsLost += 1
                let error = state.failure ?? RedisError(.connectionClosed, "the pub/sub connection to Redis at \(configuration.address) was lost")
                defer { state.confirmations.removeAll() }
                // Pending subscribes wait for the next connection, which restores them.
                for confirmation in state.confirmations {
                    if case .waiter(let waiter) = confirmation.completion, confirmation.kind.subscribes {
                        state.awaitingConnection.append(waiter)
                        state.awaitingNames[waiter] = (confirmation.kind, confirmation.names)
                    }
                }
                return (error, state.confirmations)
            }
            for confirmation in confirmations {
                switch (confirmation.kind, confirmation.completion) {
                case (.unsubscribe, .waiter), (.punsubscribe, .waiter), (.sunsubscribe, .waiter):
                    // The subscription ended with the connection: the caller got what it asked for.
                    complete(confirmation.completion, with: .success(()))
                case (_, .restore):
                    complete(confirmation.completion, with: .failure(error))
                default:
                    break
                }
            }
            return error
        }
        return (try? await future.get()) ?? RedisError(.connectionClosed, "the pub/sub connection was lost")
    }

    private func startHealthCheck(_ channel: any Channel, id: Int) {
        guard let interval = healthCheckInterval else { return }
        let amount = TimeAmount.nanoseconds(interval.timeAmount)
        eventLoop.scheduleRepeatedTask(initialDelay: amount, delay: amount) { [self] task in
            enum Check { case stop, skip, ping, dead }
            let check: Check = box.mutex.withLock { state in
                guard state.connection?.id == id else { return .stop }
                if state.readingPaused { return .skip }
                if state.pongOutstanding {
                    state.failure = RedisError(
                        .timeout, "Redis at \(configuration.address) did not answer PING within \(interval); reconnecting"
                    )
                    return .dead
                }
                state.pongOutstanding = true
                state.confirmations.append(Confirmation(kind: .pong, remaining: 1, names: [], completion: .none))
                return .ping
            }
            switch check {
            case .stop: task.cancel()
            case .skip: break
            case .ping: channel.writeAndFlush(RedisCommand("PING").encoded, promise: nil)
            case .dead:
                task.cancel()
                channel.close(promise: nil)
            }
        }
    }

    private func stop(_ error: RedisError?) async {
        let waiters = box.mutex.withLock { state in
            state.stopped = true
            state.awaitingConnection = []
            defer { state.waiters = [:] }
            return Array(state.waiters.values)
        }
        let closed = RedisError(.clientClosed, "the subscriber stopped")
        for waiter in waiters {
            waiter.timeout?.cancel()
            waiter.continuation.resume(returning: .failure(error ?? closed))
        }
        source.finish()
        eventContinuation.yield(.stopped(error))
        eventContinuation.finish()
    }
}

extension Array {
    func chunked(_ size: Int) -> [ArraySlice<Element>] {
        stride(from: 0, to: count, by: size).map { self[$0..<Swift.min($0 + size, count)] }
    }
}
