import Logging
import NIOCore
import NIOPosix
import NIOSSL

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
    /// The server this connection reached: the configured address, or the master the sentinels named.
    public let serverAddress: RedisConfiguration.Address
    let channel: any Channel
    private let queue: RedisCommandQueue
    private let logger: Logger

    private init(
        configuration: RedisConfiguration,
        serverAddress: RedisConfiguration.Address,
        channel: any Channel,
        queue: RedisCommandQueue,
        logger: Logger
    ) {
        self.configuration = configuration
        self.serverAddress = serverAddress
        self.channel = channel
        self.queue = queue
        self.logger = logger
    }

    /// Connects, authenticates, selects the database and checks the server answers, all within
    /// the configuration's connect timeout.
    ///
    /// With a ``RedisConfiguration/Address/sentinel(_:)`` address the sentinels are asked for the master
    /// first and the master's `ROLE` is checked; see ``RedisConfiguration/Sentinel``.
    ///
    /// - Throws: ``RedisError`` with ``RedisError/Code/connectionRefused``, ``RedisError/Code/timeout``,
    ///   ``RedisError/Code/authenticationFailed``, ``RedisError/Code/authenticationRequired``,
    ///   ``RedisError/Code/tlsHandshakeFailed``, ``RedisError/Code/sentinelMasterUnknown``, ...
    public static func connect(
        configuration: RedisConfiguration,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "HiredisClient")
    ) async throws(RedisError) -> RedisConnection {
        if case .sentinel(let sentinel) = configuration.address {
            let resolver = RedisSentinelResolver(configuration: configuration, sentinel: sentinel, eventLoopGroup: eventLoopGroup, logger: logger)
            return try await resolver.connectToMaster()
        }
        return try await connect(configuration: configuration, server: configuration.address, eventLoopGroup: eventLoopGroup, logger: logger)
    }

    /// Connects to `server` (a TCP or Unix address) with the credentials, database and TLS settings of `configuration`.
    static func connect(
        configuration: RedisConfiguration,
        server: RedisConfiguration.Address,
        eventLoopGroup: any EventLoopGroup,
        logger: Logger
    ) async throws(RedisError) -> RedisConnection {
        let deadline = NIODeadline.now() + .nanoseconds(configuration.connectTimeout.timeAmount)
        let queue = RedisCommandQueue(allocator: ByteBufferAllocator())
        // The RESP handlers are in the pipeline from the start, behind TLS: an alert the server sends right after
        // the handshake (TLS 1.3's "certificate required") then reaches the command handler and fails the handshake's PING.
        let channel = try await openChannel(
            configuration: configuration, server: server, eventLoopGroup: eventLoopGroup, deadline: deadline
        ) {
            [try RedisReplyHandler(), RedisCommandHandler(queue: queue, address: server)]
        }
        let connection = RedisConnection(configuration: configuration, serverAddress: server, channel: channel, queue: queue, logger: logger)
        do {
            try await connection.handshake(deadline: deadline)
        } catch {
            await connection.close()
            throw error
        }
        logger.debug("connected to Redis", metadata: ["redis": "\(configuration.redactedDescription)", "server": "\(server)"])
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

    /// Writes one command in order with the commands sent before it, without waiting for its reply:
    /// `onReply` runs with the reply (an error reply as ``RedisReply/error(_:)``) on the connection's event
    /// loop, or with the connection's failure there or on the thread that closes the connection. Returns the
    /// error instead when the command could not be queued (the connection is closed; `onReply` is not called).
    ///
    /// For callers that must keep their commands in order across calls without a round trip each, such as a
    /// consumer's group sends.
    public func enqueue(_ command: RedisCommand, onReply: @escaping @Sendable (Result<RedisReply, RedisError>) -> Void) -> RedisError? {
        let deadline = configuration.commandTimeout.map { NIODeadline.now() + .nanoseconds($0.timeAmount) }
        let handler: @Sendable (Result<RedisReply, RedisError>) -> Void = { [self] result in
            if case .success(.error(let text)) = result { noteErrorReply(text) }
            onReply(result)
        }
        switch queue.enqueue(command.encoded, waiter: .handler(handler, deadline: deadline)) {
        case .failed(let error): return error
        case .scheduleFlush: scheduleFlush()
        case .queued: break
        }
        return nil
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
            noteErrorReply(text)
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
        let replies = try result.get()
        for reply in replies {
            if case .error(let text) = reply { noteErrorReply(text) }
        }
        return replies
    }

    /// A `READONLY` reply on a connection to a sentinel-named master means the master was demoted: close the
    /// connection so that the next call reconnects and asks the sentinels again.
    private func noteErrorReply(_ text: String) {
        guard text.hasPrefix("READONLY"), case .sentinel(let sentinel) = configuration.address else { return }
        logger.warning(
            "Redis at \(serverAddress) is no longer the master of '\(sentinel.masterName)' (READONLY); reconnecting through the sentinels"
        )
        channel.pipeline.fireErrorCaught(
            RedisError(
                .connectionClosed,
                "Redis at \(serverAddress) was demoted to a replica (READONLY); reconnecting to the master the sentinels name",
                serverMessage: text
            )
        )
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
                "Redis at \(serverAddress) did not answer within \(timeout); the server may be blocked or unreachable"
            )
            let (expired, next) = queue.expire(now: .now(), firedFor: deadline, error: error)
            if expired {
                // The command may still be in the socket's send queue (a partition drops packets and TCP
                // retransmits them when it heals): reset the connection so that a command reported as failed
                // never runs later. The callers still waiting fail with connectionClosed.
                resetConnection()
                return
            }
            if let next { armTimeoutTimer(at: next) }
        }
    }

    /// Closes with a TCP reset (`SO_LINGER` 0): the kernel discards what it has not sent yet.
    private func resetConnection() {
        let channel = self.channel
        guard channel.isActive else { return }
        let close: @Sendable (Result<Void, any Error>) -> Void = { _ in channel.close(promise: nil) }
        if let provider = channel as? any SocketOptionProvider {
            provider.setSoLinger(linger(l_onoff: 1, l_linger: 0)).whenComplete(close)
        } else {
            channel.close(promise: nil)
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
                "connecting to Redis at \(serverAddress) timed out after \(configuration.connectTimeout): the server accepted the connection but did not answer"
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
        server: RedisConfiguration.Address,
        eventLoopGroup: any EventLoopGroup,
        deadline: NIODeadline,
        makeHandlers: @escaping @Sendable () throws -> [any ChannelHandler]
    ) async throws(RedisError) -> any Channel {
        let eventLoop = eventLoopGroup.next()
        var tls: (settings: RedisConfiguration.TLS, host: String, context: NIOSSLContext)?
        switch server {
        case .tcp(let host, _):
            if let settings = configuration.tls {
                tls = (settings, host, try await RedisTLS.makeContext(settings))
            }
        case .unixSocket:
            if configuration.tls != nil {
                throw RedisError(
                    .unsupported,
                    "TLS over a Unix socket is not supported: Redis serves TLS on TCP only; use rediss://host:port, or unix:// without TLS settings"
                )
            }
        case .sentinel:
            throw RedisError(.connectionFailed, "internal error: a sentinel address must be resolved before connecting; please report")
        }
        let handshake = eventLoop.makePromise(of: Void.self)
        let bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(.nanoseconds(configuration.connectTimeout.timeAmount))
            .channelOption(.socketOption(.so_keepalive), value: 1)
            .channelInitializer { [tls] channel in
                do {
                    var handlers: [any ChannelHandler] = []
                    if let tls {
                        handlers.append(
                            try NIOSSLClientHandler(context: tls.context, serverHostname: RedisTLS.serverHostname(tls.settings, host: tls.host))
                        )
                        handlers.append(RedisTLSHandler(handshake: handshake, address: server.description, host: tls.host, settings: tls.settings))
                    }
                    try channel.pipeline.syncOperations.addHandlers(handlers + makeHandlers())
                    return channel.eventLoop.makeSucceededVoidFuture()
                } catch {
                    handshake.fail(error)
                    return channel.eventLoop.makeFailedFuture(error)
                }
            }
        let channel: any Channel
        do {
            switch server {
            case .tcp(let host, let port):
                channel = try await bootstrap.channelOption(.tcpOption(.tcp_nodelay), value: 1).connect(host: host, port: port).get()
            case .unixSocket(let path):
                channel = try await bootstrap.connect(unixDomainSocketPath: path).get()
            case .sentinel:
                throw RedisError(.connectionFailed, "internal error: a sentinel address must be resolved before connecting; please report")
            }
        } catch {
            handshake.fail(error)
            if let error = error as? RedisError { throw error }
            if let tls, let mapped = RedisTLS.mapError(error, address: server.description, settings: tls.settings, host: tls.host, duringHandshake: true) {
                throw mapped
            }
            throw mapConnectError(error, configuration: configuration, server: server)
        }
        guard tls != nil else {
            handshake.succeed()
            return channel
        }
        // NIOSSL has no handshake timeout of its own: a server that accepts and never answers is cut at the deadline.
        let timeout = eventLoop.scheduleTask(deadline: deadline) {
            handshake.fail(
                RedisError(
                    .timeout,
                    "the TLS handshake with Redis at \(server) timed out after \(configuration.connectTimeout): is that its tls-port? A plain Redis port waits silently for TLS bytes: use redis:// for it"
                )
            )
        }
        do {
            try await handshake.futureResult.get()
            timeout.cancel()
            return channel
        } catch {
            timeout.cancel()
            channel.close(promise: nil)
            // Not a TLS verdict (a reset while Redis restarts, say): retryable, like any connection failure.
            throw (error as? RedisError) ?? RedisError(.connectionClosed, "the connection to Redis at \(server) failed during the TLS handshake: \(error)")
        }
    }

    static func mapConnectError(_ error: any Error, configuration: RedisConfiguration, server: RedisConfiguration.Address) -> RedisError {
        let address = server
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
            throw RedisError(.connectionClosed, "could not switch the connection to \(serverAddress) to pub/sub: \(error)")
        }
    }
}
