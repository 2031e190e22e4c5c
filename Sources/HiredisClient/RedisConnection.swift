import Logging
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// One connection to Redis that pipelines commands from any number of concurrent callers.
///
/// Commands are written in the order they are sent and each caller gets its own reply. Sending never
/// blocks a thread: the caller's task suspends until the event loop has read the reply.
/// When the connection drops, every waiting caller fails with ``RedisError/Code/connectionClosed``;
/// use ``RedisClient`` for a handle that reconnects.
public final class RedisConnection: Sendable {
    /// The configuration this connection was made with.
    public let configuration: RedisConfiguration
    let channel: any Channel
    private let queue: RedisCommandQueue
    private let logger: Logger

    private init(configuration: RedisConfiguration, channel: any Channel, queue: RedisCommandQueue, logger: Logger) {
        self.configuration = configuration
        self.channel = channel
        self.queue = queue
        self.logger = logger
    }

    /// Connects, authenticates, selects the database and checks the server answers, all within
    /// the configuration's connect timeout.
    ///
    /// - Throws: ``RedisError`` with ``RedisError/Code/connectionRefused``, ``RedisError/Code/timeout``,
    ///   ``RedisError/Code/authenticationFailed``, ``RedisError/Code/authenticationRequired``, ...
    public static func connect(
        configuration: RedisConfiguration,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "HiredisClient")
    ) async throws(RedisError) -> RedisConnection {
        let deadline = NIODeadline.now() + .nanoseconds(configuration.connectTimeout.timeAmount)
        let channel = try await openChannel(configuration: configuration, eventLoopGroup: eventLoopGroup)
        let queue = RedisCommandQueue(allocator: channel.allocator)
        do {
            try await channel.eventLoop.submit { [address = configuration.address] in
                try channel.pipeline.syncOperations.addHandlers([
                    try RedisReplyHandler(), RedisCommandHandler(queue: queue, address: address),
                ])
            }.get()
        } catch {
            channel.close(promise: nil)
            throw (error as? RedisError) ?? RedisError(.connectionFailed, "could not set up the connection to \(configuration.address): \(error)")
        }
        let connection = RedisConnection(configuration: configuration, channel: channel, queue: queue, logger: logger)
        do {
            try await connection.handshake(deadline: deadline)
        } catch {
            await connection.close()
            throw error
        }
        logger.debug("connected to Redis", metadata: ["redis": "\(configuration.redactedDescription)"])
        return connection
    }

    /// Sends one command and returns its reply.
    ///
    /// - Throws: ``RedisError/Code/errorReply`` with the server's text when Redis answers with an error,
    ///   ``RedisError/Code/timeout`` when the command timeout elapses, ``RedisError/Code/connectionClosed``.
    @discardableResult
    public func send(_ command: RedisCommand) async throws(RedisError) -> RedisReply {
        try await send(command, deadline: configuration.commandTimeout.map { .now() + .nanoseconds($0.timeAmount) })
    }

    /// Sends one command given as a name and arguments.
    @discardableResult
    public func send(_ name: String, _ arguments: RedisArgument...) async throws(RedisError) -> RedisReply {
        try await send(RedisCommand(name, arguments: arguments))
    }

    /// Sends several commands in one write and returns their replies in order.
    ///
    /// Error replies are returned in place as ``RedisReply/error(_:)``; the call itself throws only when
    /// the connection fails or times out.
    public func pipeline(_ commands: [RedisCommand]) async throws(RedisError) -> [RedisReply] {
        try await pipeline(commands, deadline: configuration.commandTimeout.map { .now() + .nanoseconds($0.timeAmount) })
    }

    /// Whether the connection is closed (by either side).
    public var isClosed: Bool { queue.isClosed || !channel.isActive }

    /// Closes the connection; waiting callers fail with ``RedisError/Code/connectionClosed``.
    public func close() async {
        queue.close(with: RedisError(.clientClosed, "the Redis connection was closed by its owner"))
        try? await channel.close()
    }

    /// Waits until the connection is closed.
    public func closed() async {
        try? await channel.closeFuture.get()
    }

    // MARK: - Internals

    func send(_ command: RedisCommand, deadline: NIODeadline?) async throws(RedisError) -> RedisReply {
        let result = await withUnsafeContinuation { (continuation: RedisCommandQueue.SingleContinuation) in
            switch queue.enqueue(command.encoded, waiter: .single(continuation, deadline: deadline)) {
            case .failed(let error): continuation.resume(returning: .failure(error))
            case .scheduleFlush: scheduleFlush()
            case .queued: break
            }
        }
        let reply = try result.get()
        if case .error(let text) = reply {
            throw RedisError.fromErrorReply(text, command: command.name)
        }
        return reply
    }

    func pipeline(_ commands: [RedisCommand], deadline: NIODeadline?) async throws(RedisError) -> [RedisReply] {
        if commands.isEmpty { return [] }
        let result = await withUnsafeContinuation { (continuation: RedisCommandQueue.BatchContinuation) in
            let batch = RedisCommandQueue.Batch(continuation: continuation, expected: commands.count)
            switch queue.enqueue(commands, waiter: .batch(batch, deadline: deadline)) {
            case .failed(let error): continuation.resume(returning: .failure(error))
            case .scheduleFlush: scheduleFlush()
            case .queued: break
            }
        }
        return try result.get()
    }

    private func scheduleFlush() {
        channel.eventLoop.execute { [self] in
            let (buffer, armAt) = queue.takeOutbound(allocator: channel.allocator)
            if buffer.readableBytes > 0 {
                channel.writeAndFlush(buffer, promise: nil)
            }
            if let armAt { armTimeoutTimer(at: armAt) }
        }
    }

    private func armTimeoutTimer(at deadline: NIODeadline) {
        channel.eventLoop.scheduleTask(deadline: deadline) { [self] in
            let timeout = configuration.commandTimeout.map { "\($0)" } ?? "its deadline"
            let error = RedisError(
                .timeout,
                "Redis at \(configuration.address) did not answer within \(timeout); the server may be blocked or unreachable"
            )
            if let next = queue.expire(now: .now(), firedFor: deadline, error: error) {
                armTimeoutTimer(at: next)
            }
        }
    }

    private func handshake(deadline: NIODeadline) async throws(RedisError) {
        var commands: [RedisCommand] = []
        if let password = configuration.password {
            if let username = configuration.username {
                commands.append(RedisCommand("AUTH", .string(username), .string(password)))
            } else {
                commands.append(RedisCommand("AUTH", .string(password)))
            }
        }
        if configuration.database != 0 {
            commands.append(RedisCommand("SELECT", .integer(configuration.database)))
        }
        if let name = configuration.clientName {
            commands.append(RedisCommand("CLIENT", "SETNAME", .string(name)))
        }
        // PING surfaces NOAUTH when the server wants a password and none was given.
        commands.append(RedisCommand("PING"))
        let replies: [RedisReply]
        do {
            replies = try await pipeline(commands, deadline: deadline)
        } catch where error.code == .timeout {
            throw RedisError(
                .timeout,
                "connecting to Redis at \(configuration.address) timed out after \(configuration.connectTimeout): the server accepted the connection but did not answer"
            )
        }
        for (command, reply) in zip(commands, replies) {
            if case .error(let text) = reply {
                throw RedisError.fromErrorReply(text, command: command.name)
            }
        }
    }

    private static func openChannel(
        configuration: RedisConfiguration,
        eventLoopGroup: any EventLoopGroup
    ) async throws(RedisError) -> any Channel {
        let bootstrap = ClientBootstrap(group: eventLoopGroup)
            .connectTimeout(.nanoseconds(configuration.connectTimeout.timeAmount))
            .channelOption(.socketOption(.so_keepalive), value: 1)
        do {
            switch configuration.address {
            case .tcp(let host, let port):
                return try await bootstrap
                    .channelOption(.tcpOption(.tcp_nodelay), value: 1)
                    .connect(host: host, port: port).get()
            case .unixSocket(let path):
                return try await bootstrap.connect(unixDomainSocketPath: path).get()
            }
        } catch {
            throw mapConnectError(error, configuration: configuration)
        }
    }

    static func mapConnectError(_ error: any Error, configuration: RedisConfiguration) -> RedisError {
        let address = configuration.address
        var errnos: [Int32] = []
        if let error = error as? IOError { errnos.append(error.errnoCode) }
        if let error = error as? NIOConnectionError {
            for failure in error.connectionErrors {
                if let ioError = failure.error as? IOError { errnos.append(ioError.errnoCode) }
            }
            if error.connectionErrors.isEmpty, error.dnsAError != nil || error.dnsAAAAError != nil {
                return RedisError(.connectionFailed, "could not resolve the Redis host in \(address): check the host name")
            }
        }
        if let channelError = error as? ChannelError, case .connectTimeout = channelError {
            return RedisError(
                .timeout,
                "connecting to Redis at \(address) timed out after \(configuration.connectTimeout): check the host, port and firewall"
            )
        }
        if errnos.contains(ECONNREFUSED) {
            return RedisError(.connectionRefused, "connection to Redis at \(address) refused: is redis-server running there?")
        }
        if errnos.contains(ENOENT) {
            return RedisError(.connectionFailed, "no Redis socket at \(address): check the path and that redis-server has unixsocket set")
        }
        return RedisError(.connectionFailed, "could not connect to Redis at \(address): \(error)")
    }

    /// Replaces the command handler with `handler` for a connection that becomes a subscriber.
    func becomeSubscriber(_ makeHandler: @escaping @Sendable () -> any ChannelHandler) async throws(RedisError) {
        do {
            try await channel.eventLoop.submit { [channel] in
                let pipeline = channel.pipeline.syncOperations
                let commandHandler = try pipeline.handler(type: RedisCommandHandler.self)
                pipeline.removeHandler(commandHandler, promise: nil)
                try pipeline.addHandler(makeHandler())
            }.get()
        } catch {
            throw RedisError(.connectionClosed, "could not switch the connection to \(configuration.address) to pub/sub: \(error)")
        }
    }
}
