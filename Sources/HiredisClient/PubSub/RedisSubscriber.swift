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
///
/// The decisions are `SubscriptionStateMachine`'s and the replies are read in `+Replies`; this file (about
/// 430 lines) keeps the connect loop, the restore and the health check, which drive one connection together.
public final class RedisSubscriber: Sendable {

    typealias ConfirmationKind = SubscriptionStateMachine.Kind

    struct Waiter {
        let continuation: CheckedContinuation<Result<Void, RedisError>, Never>
        var timeout: Scheduled<Void>?
    }

    /// The state machine, and what the subscriber holds for it: the live connection's channel, the callers'
    /// continuations, the current restore's promise.
    struct State {
        var machine: SubscriptionStateMachine
        var channel: (any Channel)?
        var waiters: [Int: Waiter] = [:]
        var restore: EventLoopPromise<Void>?
        var running = false
    }

    /// Resumes reading the socket when the message consumer wants more.
    struct ReadDemand: NIOAsyncSequenceProducerDelegate {
        let eventLoop: any EventLoop
        let state: StateBox

        func produceMore() {
            eventLoop.execute {
                let channel = state.mutex.withLock { state -> (any Channel)? in
                    state.machine.resumeReading()
                    return state.channel
                }
                channel?.setOption(.autoRead, value: true).whenSuccess { channel?.read() }
            }
        }

        func didTerminate() {}
    }

    final class StateBox: Sendable {
        let mutex: Mutex<State>
        init(sharded: Bool, failsWhileUnreachable: Bool) {
            mutex = Mutex(State(machine: SubscriptionStateMachine(sharded: sharded, failsWhileUnreachable: failsWhileUnreachable)))
        }
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
    let handler: MessageHandler?
    let box: StateBox
    let source: Messages.Base.Source
    let eventContinuation: AsyncStream<Event>.Continuation
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
        self.box = StateBox(sharded: sharded, failsWhileUnreachable: failsWhileUnreachable)
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
    public var channels: Set<String> { box.mutex.withLock { $0.machine.channels } }
    /// The patterns the subscriber holds or will hold once connected.
    public var patterns: Set<String> { box.mutex.withLock { $0.machine.patterns } }
    /// Whether a connection is up and subscribed.
    public var isConnected: Bool { box.mutex.withLock { $0.machine.connection != nil } }
    /// Counters since creation.
    public var statistics: Statistics { box.mutex.withLock { $0.machine.statistics } }

    // MARK: - Running

    /// Connects and keeps the subscriptions alive until the task is cancelled.
    ///
    /// Returns normally when cancelled. Reconnects after every loss with ``reconnectPolicy``.
    /// - Throws: an error that retrying cannot fix, such as ``RedisError/Code/authenticationFailed``:
    ///   the subscriber stops at once instead of hammering Redis with a wrong password.
    public func run() async throws(RedisError) {
        let alreadyRunning = box.mutex.withLock { state in
            defer { state.running = true }
            return state.running || state.machine.stopped
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
                let id = box.mutex.withLock { $0.machine.connectionNumber() }
                try await connection.becomeSubscriber { RedisPubSubHandler(subscriber: self, connectionID: id) }
                let restored = try await attach(connection.channel, id: id)
                attempt = 0
                if everConnected {
                    box.mutex.withLock { $0.machine.reconnected() }
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
                let failed = box.mutex.withLock { state in state.machine.connectFailed(error).compactMap { state.waiters.removeValue(forKey: $0) } }
                let refused = SubscriptionStateMachine.unreachableError(error, kind: .subscribe, address: "\(configuration.address)")
                for waiter in failed {
                    waiter.timeout?.cancel()
                    waiter.continuation.resume(returning: .failure(refused))
                }
                eventContinuation.yield(.connectFailed(error, attempt: attempt, retryIn: delay))
                logger.debug("Redis pub/sub connect failed", metadata: ["error": "\(error.message)", "retry_in": "\(delay)"])
                do { try await Task.sleep(for: delay) } catch { break }
            }
        }
        await stop(fatal)
        if let fatal { throw fatal }
    }

    // MARK: - Called by the handler, on the event loop

    /// Reads the socket again after the message handler returned `false`.
    public func resumeReading() {
        ReadDemand(eventLoop: eventLoop, state: box).produceMore()
    }

    /// The event loop the connection and the message handler run on.
    public var connectionEventLoop: any EventLoop { eventLoop }

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
        let (request, channel) = box.mutex.withLock { state in
            let request = state.machine.request(kind, names, address: "\(configuration.address)")
            switch request {
            case .write(let waiter), .wait(let waiter): state.waiters[waiter] = Waiter(continuation: continuation)
            case .fail, .succeed: break
            }
            return (request, state.channel)
        }
        switch request {
        case .fail(let error):
            continuation.resume(returning: .failure(error))
        case .succeed:
            continuation.resume(returning: .success(()))
        case .write(let id):
            armTimeout(waiter: id, kind: kind)
            channel?.writeAndFlush(RedisCommand(kind.command, arguments: names.map { .string($0) }).encoded, promise: nil)
        case .wait(let id):
            armTimeout(waiter: id, kind: kind)
        }
    }

    private func armTimeout(waiter id: Int, kind: ConfirmationKind) {
        let timeout = configuration.commandTimeout ?? configuration.connectTimeout
        let scheduled = eventLoop.scheduleTask(in: .nanoseconds(timeout.timeAmount)) { [self] in
            let waiter = box.mutex.withLock { state in
                state.machine.timedOut(id)
                return state.waiters.removeValue(forKey: id)
            }
            waiter?.continuation.resume(
                returning: .failure(
                    RedisError(
                        .timeout,
                        "Redis at \(configuration.address) did not confirm \(kind.command) within \(timeout); the subscription stays requested and is made when the connection is back"
                    )
                )
            )
        }
        box.mutex.withLock { state in state.waiters[id]?.timeout = scheduled }
    }

    func complete(_ completion: SubscriptionStateMachine.Completion, with result: Result<Void, RedisError>) {
        switch completion {
        case .waiter(let id):
            let waiter = box.mutex.withLock { $0.waiters.removeValue(forKey: id) }
            waiter?.timeout?.cancel()
            waiter?.continuation.resume(returning: result)
        case .restore:
            let promise = box.mutex.withLock { state in
                defer { state.restore = nil }
                return state.restore
            }
            switch result {
            case .success: promise?.succeed()
            case .failure(let error): promise?.fail(error)
            }
        case .none:
            break
        }
    }

    /// Makes `channel` the live connection and subscribes it to everything requested.
    private func attach(_ channel: any Channel, id: Int) async throws(RedisError) -> (channels: Int, patterns: Int) {
        let future = eventLoop.flatSubmit { [self] () -> EventLoopFuture<(channels: Int, patterns: Int)> in
            let promise = eventLoop.makePromise(of: Void.self)
            let restore = box.mutex.withLock { state in
                let restore = state.machine.attached(connection: id)
                state.channel = channel
                state.restore = restore.commands.isEmpty ? nil : promise
                return restore
            }
            if restore.readingPaused { try? channel.syncOptions?.setOption(.autoRead, value: false) }
            if restore.commands.isEmpty {
                promise.succeed()
            } else {
                for (kind, names) in restore.commands {
                    channel.write(RedisCommand(kind.command, arguments: names.map { .string($0) }).encoded, promise: nil)
                }
                channel.flush()
            }
            startHealthCheck(channel, id: id)
            // A connection that drops before every subscription is confirmed fails the restore (a completed
            // promise ignores this), so run() reconnects instead of waiting forever.
            channel.closeFuture.whenComplete { _ in
                promise.fail(RedisError(.connectionClosed, "the pub/sub connection to Redis at \(self.configuration.address) closed while restoring subscriptions"))
            }
            return promise.futureResult.map {
                for waiter in restore.waiting { self.complete(.waiter(waiter), with: .success(())) }
                return (restore.channelCount, restore.patternCount)
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
            let (detach, restore) = box.mutex.withLock { state -> (SubscriptionStateMachine.Detach?, EventLoopPromise<Void>?) in
                guard let detach = state.machine.detached(connection: id, address: "\(configuration.address)") else { return (nil, nil) }
                state.channel = nil
                defer { state.restore = nil }
                return (detach, state.restore)
            }
            guard let detach else { return RedisError(.connectionClosed, "connection replaced") }
            // The subscriptions ended with the connection: unsubscribe callers got what they asked for.
            for waiter in detach.succeed { complete(.waiter(waiter), with: .success(())) }
            if detach.failRestore { restore?.fail(detach.error) }
            return detach.error
        }
        return (try? await future.get()) ?? RedisError(.connectionClosed, "the pub/sub connection was lost")
    }

    private func startHealthCheck(_ channel: any Channel, id: Int) {
        guard let interval = healthCheckInterval else { return }
        let amount = TimeAmount.nanoseconds(interval.timeAmount)
        let address = configuration.address
        eventLoop.scheduleRepeatedTask(initialDelay: amount, delay: amount) { [box] task in
            let check = box.mutex.withLock { state in
                state.machine.healthCheck(
                    connection: id, unanswered: RedisError(.timeout, "Redis at \(address) did not answer PING within \(interval); reconnecting")
                )
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
            state.machine.stop()
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
