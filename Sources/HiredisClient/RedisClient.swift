import Logging
import NIOCore
import NIOPosix
import Synchronization

/// A pipelined command connection that reconnects when it is needed again.
///
/// Every call uses one shared ``RedisConnection``, so concurrent callers are batched onto one socket.
/// When that connection is lost, the calls in flight fail with ``RedisError/Code/connectionClosed``
/// (they may or may not have run; nothing is retried behind your back) and the next call reconnects.
/// Concurrent callers share one connection attempt. After a failed attempt, calls fail at once with the
/// last error until the backoff delay has passed, so an outage does not turn into a connection storm.
public final class RedisClient: Sendable {
    private enum State {
        case idle(attempt: Int, retryAfter: ContinuousClock.Instant?, lastError: RedisError?)
        case connecting(Task<Result<RedisConnection, RedisError>, Never>, attempt: Int)
        case connected(RedisConnection)
        case closed
    }

    /// The connection settings.
    public let configuration: RedisConfiguration
    /// The backoff between failed connection attempts.
    public let reconnectPolicy: RedisReconnectPolicy
    private let eventLoopGroup: any EventLoopGroup
    private let logger: Logger
    private let state = Mutex(State.idle(attempt: 0, retryAfter: nil, lastError: nil))
    private let attempts = Mutex(0)

    /// How many times the client has tried to connect (each success or failure counts once).
    public var connectionAttempts: Int { attempts.withLock { $0 } }

    /// Creates a client; it connects on first use.
    public init(
        configuration: RedisConfiguration,
        reconnectPolicy: RedisReconnectPolicy = RedisReconnectPolicy(),
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "HiredisClient")
    ) {
        self.configuration = configuration
        self.reconnectPolicy = reconnectPolicy
        self.eventLoopGroup = eventLoopGroup
        self.logger = logger
    }

    /// Sends one command; see ``RedisConnection/send(_:)-(RedisCommand)``.
    @discardableResult
    public func send(_ command: RedisCommand) async throws(RedisError) -> RedisReply {
        try await usableConnection().send(command)
    }

    /// Sends one command given as a name and arguments.
    @discardableResult
    public func send(_ name: String, _ arguments: RedisArgument...) async throws(RedisError) -> RedisReply {
        try await usableConnection().send(RedisCommand(name, arguments: arguments))
    }

    /// Sends several commands in one write; see ``RedisConnection/pipeline(_:)``.
    public func pipeline(_ commands: [RedisCommand]) async throws(RedisError) -> [RedisReply] {
        try await usableConnection().pipeline(commands)
    }

    /// The connection, or the reason there is none: a command that fails here was never written.
    private func usableConnection() async throws(RedisError) -> RedisConnection {
        do {
            return try await connection()
        } catch {
            throw error.notSent()
        }
    }

    /// Connects now instead of on first use, and reports the failure if there is one.
    public func connect() async throws(RedisError) {
        _ = try await connection()
    }

    /// Whether a connection is currently up.
    public var isConnected: Bool {
        state.withLock { state in
            if case .connected(let connection) = state { return !connection.isClosed }
            return false
        }
    }

    /// The connection when one is up, without connecting or waiting: for ``RedisConnection/enqueue(_:onReply:)``.
    public var liveConnection: RedisConnection? {
        state.withLock { state in
            if case .connected(let connection) = state, !connection.isClosed { return connection }
            return nil
        }
    }

    /// Closes the connection; later calls fail with ``RedisError/Code/clientClosed``.
    public func close() async {
        let previous = state.withLock { state in
            defer { state = .closed }
            return state
        }
        switch previous {
        case .connected(let connection): await connection.close()
        case .connecting(let task, _):
            if case .success(let connection) = await task.value { await connection.close() }
        case .idle, .closed: break
        }
    }

    /// The live connection, connecting first when there is none.
    func connection() async throws(RedisError) -> RedisConnection {
        enum Next {
            case ready(RedisConnection)
            case wait(Task<Result<RedisConnection, RedisError>, Never>)
            case fail(RedisError)
        }
        let next: Next = state.withLock { state in
            var attempt = 0
            switch state {
            case .connected(let connection):
                if !connection.isClosed { return .ready(connection) }
                logger.debug("Redis command connection lost; reconnecting")
            case .connecting(let task, _):
                return .wait(task)
            case .closed:
                return .fail(RedisError(.clientClosed, "the Redis client was closed; create a new one"))
            case .idle(let previousAttempt, let retryAfter, let lastError):
                if let retryAfter, let lastError, ContinuousClock.now < retryAfter {
                    return .fail(lastError)
                }
                attempt = previousAttempt
            }
            attempts.withLock { $0 += 1 }
            let task = Task { [configuration, eventLoopGroup, logger] () -> Result<RedisConnection, RedisError> in
                do throws(RedisError) {
                    let connection = try await RedisConnection.connect(
                        configuration: configuration, eventLoopGroup: eventLoopGroup, logger: logger
                    )
                    return .success(connection)
                } catch {
                    return .failure(error)
                }
            }
            state = .connecting(task, attempt: attempt)
            return .wait(task)
        }
        switch next {
        case .ready(let connection):
            return connection
        case .fail(let error):
            throw error
        case .wait(let task):
            let result = await task.value
            let closed: RedisConnection? = state.withLock { state in
                guard case .connecting(let current, let attempt) = state, current == task else {
                    if case .closed = state, case .success(let connection) = result { return connection }
                    return nil
                }
                switch result {
                case .success(let connection):
                    state = .connected(connection)
                case .failure(let error):
                    let delay = reconnectPolicy.delay(forAttempt: attempt + 1)
                    state = .idle(attempt: attempt + 1, retryAfter: .now + delay, lastError: error)
                }
                return nil
            }
            if let closed {
                await closed.close()
                throw RedisError(.clientClosed, "the Redis client was closed; create a new one")
            }
            return try result.get()
        }
    }
}
