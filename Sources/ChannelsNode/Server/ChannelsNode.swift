import ChannelLayers
import ChannelsProtocol
import CoreMetrics
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket
import ServiceLifecycle
import Synchronization

/// A WebSocket front node: serves consumers over WebSocket, pages, health, readiness and metrics.
///
/// Stateless: every connection's state lives in its consumer and the channel layer, so any client may
/// connect to any node and no load balancer needs sticky sessions.
///
/// The node is a SwiftNIO server of its own: a WebSocket connection is a channel handler and the layer's
/// inbox for its channel (``WebSocketConnection``), with no task while it is idle.
///
/// On graceful shutdown (SIGTERM in `channels-node`): readiness turns false, new WebSocket upgrades are
/// refused with 503, open connections are closed with 1001 at ``NodeConfiguration/drainCloseRate`` per
/// second so that clients reconnect elsewhere gradually, their memberships are left, and ``run()`` returns
/// within ``NodeConfiguration/drainTime``.
public final class ChannelsNode: Service {
    /// The prefix of the group each node's readiness probe uses; keep it out of the registry
    /// (``RedisPubSubChannelLayer/Configuration/unlistedGroupPrefixes``).
    public static let probeGroupPrefix = "channels.probe."

    /// The nodes' own groups (the readiness probe's, the control group): give these to the Redis layer's
    /// ``RedisPubSubChannelLayer/Configuration/unlistedGroupPrefixes``; listings and the API leave them out.
    public static let unlistedGroupPrefixes = [probeGroupPrefix, NodeControl.group]

    /// This build's version, in the API's node reports and on the admin page.
    public static let version = "0.1.0"

    /// A fixed page the node serves at a path (the demo page, a client script).
    public struct Page: Sendable {
        public var contentType: String
        public var body: String
        public init(contentType: String = "text/html; charset=utf-8", body: String) {
            self.contentType = contentType
            self.body = body
        }
    }

    public let configuration: NodeConfiguration
    public let layer: any ChannelLayer
    private let layerRunner: (@Sendable () async throws -> Void)?
    private let router: ConsumerRouter
    private let middleware: [any HandshakeMiddleware]
    private let pages: [String: Page]
    private let metricsExport: (@Sendable () -> String)?
    private let logger: Logger
    private let warnings: WarningLimiter
    private let metrics = NodeMetrics()
    private let connections = ConnectionRegistry()
    private let probe: ReadinessProbe
    private let draining = DrainingFlag()
    private let admission: ConnectionAdmission
    private let pendingHandshakes = ConnectionAdmission(limit: 0)
    private let acceptFailureLogged = Atomic<Bool>(false)
    private let eventLoopGroup: any EventLoopGroup
    private let control: NodeControlService
    private let api: ServerAPI?
    private let layerName: String
    private let startedAt = WallClock.now()

    /// Creates a node.
    /// - Parameters:
    ///   - layer: the channel layer consumers use.
    ///   - layerRunner: runs the layer for the node's lifetime (``RedisPubSubChannelLayer/run()``), if it needs it.
    ///   - router: which consumer serves which path.
    ///   - middleware: handshake steps, in order (an origin check is added from the configuration).
    ///   - pages: fixed pages by path (`/` for a demo page).
    ///   - metricsExport: renders the metrics for `/metrics` (Prometheus text); `nil` answers 404.
    ///   - api: the HTTP API and admin page; off by default.
    ///   - directory: lists groups, members and nodes for the API; by default the layer itself when it can
    ///     (the in-memory layer lists its own), else the API answers 501 to listings.
    ///   - layerName: how reports name the layer (`pubsub`, `core`, `memory`).
    public init(
        configuration: NodeConfiguration,
        layer: any ChannelLayer,
        layerRunner: (@Sendable () async throws -> Void)? = nil,
        router: ConsumerRouter,
        middleware: [any HandshakeMiddleware] = [],
        pages: [String: Page] = [:],
        metricsExport: (@Sendable () -> String)? = nil,
        api: ServerAPIConfiguration = .off,
        directory: (any ClusterDirectory)? = nil,
        layerName: String? = nil,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "channels-node")
    ) {
        self.configuration = configuration
        self.layer = layer
        self.layerRunner = layerRunner
        self.router = router
        var steps = middleware
        if !configuration.allowedOrigins.isEmpty { steps.insert(OriginCheckMiddleware(allowed: configuration.allowedOrigins), at: 0) }
        self.middleware = steps
        self.pages = pages
        self.metricsExport = metricsExport
        self.logger = logger
        self.warnings = WarningLimiter(logger: logger)
        self.eventLoopGroup = eventLoopGroup
        self.admission = ConnectionAdmission(limit: configuration.maxConnections)
        self.probe = ReadinessProbe(layer: layer, nodeID: configuration.nodeID, interval: configuration.readinessProbeInterval)
        self.layerName = layerName ?? (layer is InMemoryChannelLayer ? "memory" : String(describing: type(of: layer)))
        let report = NodeReport(
            nodeID: configuration.nodeID, layerName: self.layerName, startedAt: startedAt, layer: layer, metrics: metrics,
            connections: connections, probe: probe, draining: draining, apiEnabled: api.isEnabled
        )
        self.control = NodeControlService(layer: layer, nodeID: configuration.nodeID, connections: connections, logger: logger) { report.make() }
        self.api =
            api.isEnabled
            ? ServerAPI(
                configuration: api, layer: layer, directory: directory, control: control, nodeID: configuration.nodeID, metrics: metrics,
                ownReport: { report.make() }
            ) : nil
    }

    /// Whether the node takes new connections: not draining, and the layer answered a round trip recently.
    public var isReady: Bool { !draining.isSet && probe.isPassing }

    /// Open WebSocket connections.
    public var connectionCount: Int { connections.count }

    public func run() async throws {
        let server = try await bind()
        logger.info("listening", metadata: ["address": "\(server.localAddress?.description ?? "?")", "node": "\(configuration.nodeID)"])
        // The first of these to report decides what happens: a graceful shutdown request drains, a failure is rethrown.
        let (outcomes, report) = AsyncStream.makeStream(of: Result<Void, any Error>.self)
        server.closeFuture.whenComplete { _ in report.yield(.failure(ChannelLayerError(.closed, "the HTTP server stopped"))) }
        let layerTask = layerRunner.map { runner in
            Task.detached {
                do {
                    try await runner()
                } catch {
                    report.yield(.failure(error))
                }
            }
        }
        let probeTask = Task.detached { [probe] in await probe.run() }
        let controlTask = Task.detached { [control] in await control.run() }
        let meterTask = Task.detached { [metrics] in await metrics.traffic.run() }
        // Inherits the service's task-locals, so it sees the ServiceGroup's graceful shutdown.
        let shutdownWatcher = Task {
            if (try? await gracefulShutdown()) != nil { report.yield(.success(())) }
        }
        defer {
            shutdownWatcher.cancel()
            probeTask.cancel()
            controlTask.cancel()
            meterTask.cancel()
            layerTask?.cancel()
        }
        var first: Result<Void, any Error>? = nil
        for await outcome in outcomes {
            first = outcome
            break
        }
        if case .failure(let error) = first {
            try? await server.close()
            throw error
        }
        if first != nil { await drain() }
        try? await server.close()
        probeTask.cancel()
        controlTask.cancel()
        meterTask.cancel()
        layerTask?.cancel()
        await layerTask?.value
        logger.info("stopped", metadata: ["node": "\(configuration.nodeID)"])
    }

    private func bind() async throws -> any Channel {
        let limits = configuration.limits
        let bootstrap = ServerBootstrap(group: eventLoopGroup)
            .serverChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    // Out of file descriptors: stop accepting for a moment instead of spinning, keep serving
                    // the open connections, count it, say it once.
                    try channel.pipeline.syncOperations.addHandler(AcceptBackoffHandler(backoffProvider: { [self] error in
                        metrics.acceptFailures.increment()
                        if !acceptFailureLogged.exchange(true, ordering: .relaxed) {
                            logger.error("cannot accept connections (\(error)); pausing accepts for a second at a time; raise the open-file limit or lower --max-connections")
                        }
                        return AcceptBackoffHandler.defaultBackoffProvider(error: error)
                    }))
                }
            }
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            // A small kernel send buffer keeps a non-reading client's backlog where the node counts it
            // (the outbound buffer, --max-queued-bytes) instead of megabytes hidden in the kernel.
            .childChannelOption(.socketOption(.so_sndbuf), value: SocketOptionValue(configuration.socketSendBuffer))
            .childChannelOption(.writeBufferWaterMark, value: .init(low: limits.maxQueuedBytes / 2, high: limits.maxQueuedBytes))
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture { try initialize(channel) }
            }
        do {
            return try await bootstrap.bind(host: configuration.host, port: configuration.port).get()
        } catch let error as IOError where error.errnoCode == 98 {
            throw NodeError(
                "cannot listen on \(configuration.host):\(configuration.port): the address is in use; stop what listens there or pick another --port"
            )
        } catch {
            throw NodeError("cannot listen on \(configuration.host):\(configuration.port): \(error)")
        }
    }

    /// The pipeline of a new connection: HTTP/1.1 with the WebSocket upgrade, then plain requests.
    private func initialize(_ channel: any Channel) throws {
        // Connections that have not upgraded are capped: each costs a socket and a parser, and sends nothing useful yet.
        if configuration.maxPendingHandshakes > 0, pendingHandshakes.count >= configuration.maxPendingHandshakes {
            metrics.pendingHandshakeRefusals.increment()
            channel.close(promise: nil)
            return
        }
        let pending = PendingSlot(admission: pendingHandshakes)
        channel.closeFuture.whenComplete { _ in pending.release() }
        let http = HTTPRequestHandler(
            headTimeout: .nanoseconds(Int64(configuration.handshakeTimeout / .nanoseconds(1))),
            onTimeout: { [metrics] in metrics.handshakeTimeouts.increment() },
            onBadRequest: { [metrics] in metrics.badRequests.increment() },
            // A stream (the API's events) is a connection of its own kind, under its own limit.
            onStream: { pending.release() },
            examine: { [self] request in examine(&request) }
        ) { [self] request, upgradeError in await answer(request, upgradeError: upgradeError) }
        let prepared = PreparedConnection()
        let upgrader = WebSocketUpgrader(
            shouldUpgrade: { [self] channel, head in
                let promise = channel.eventLoop.makePromise(of: HTTPHeaders?.self)
                promise.completeWithTask {
                    guard let connection = await self.prepareConnection(head, channel: channel) else { return nil }
                    if let denial = connection.denial {
                        // No WebSocket: the HTTP handler answers with the consumer's status.
                        self.metrics.refusedHandshakes.increment()
                        connection.abandon()
                        throw WebSocketHandshakeError.denied(status: denial.status, reason: denial.reason)
                    }
                    prepared.connection.withLock { $0 = connection }
                    return HTTPHeaders(connection.handshakeHeaders.map { ($0.name, $0.value) })
                }
                return promise.futureResult
            },
            installHandlers: { [self] channel, _ in
                channel.eventLoop.makeCompletedFuture {
                    guard let connection = prepared.connection.withLock({ $0 }) else { throw WebSocketHandshakeError.notAWebSocketPath }
                    let maxSize = configuration.limits.maxMessageSize
                    let operations = channel.pipeline.syncOperations
                    try operations.addHandler(ByteToMessageHandler(WebSocketFrameDecoder(maxFrameSize: maxSize)))
                    try operations.addHandler(
                        NIOWebSocketFrameAggregator(minNonFinalFragmentSize: 0, maxAccumulatedFrameCount: 1024, maxAccumulatedFrameSize: maxSize)
                    )
                    try operations.addHandler(connection)
                    pending.release()
                    connections.add(connection)
                    metrics.connectionOpened()
                    if configuration.logConnections {
                        logger.info(
                            "connection opened",
                            metadata: ["path": "\(connection.scope.path)", "client": "\(connection.scope.clientAddress ?? "-")", "user": "\(connection.scope.user?["sub"]?.string ?? "-")"]
                        )
                    }
                }
            }
        )
        try channel.pipeline.syncOperations.configureHTTPServerPipeline(
            withServerUpgrade: (
                upgraders: [upgrader],
                completionHandler: { context in
                    // The HTTP handler must not see WebSocket bytes.
                    context.pipeline.removeHandler(name: Self.httpHandlerName, promise: nil)
                }
            ),
            // The HTTP handler answers parser errors itself: 431 for headers too large, 400 otherwise.
            withErrorHandling: false
        )
        try channel.pipeline.syncOperations.addHandler(http, name: Self.httpHandlerName)
    }

    private static let httpHandlerName = "channels.http"

    private func drain() async {
        draining.set()
        let open = connections.count
        logger.info("draining", metadata: ["connections": "\(open)", "drain_time": "\(configuration.drainTime)"])
        let deadline = ContinuousClock.now + configuration.drainTime
        await connections.closeAll(
            code: CloseCode.goingAway, reason: "node draining", perSecond: configuration.drainCloseRate, until: deadline - .seconds(1)
        )
        while connections.count > 0 && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
        logger.info("drained", metadata: ["remaining": "\(connections.count)"])
    }

    // MARK: - Handshake

    private enum Handshake {
        case accept(ConsumerRouter.Route, Scope)
        case reject(HandshakeRejection)
        case notFound
    }

    private func handshake(uri: String, headers: HTTPHeaders, clientAddress: String?) async -> Handshake {
        let pathEnd = uri.firstIndex(of: "?") ?? uri.endIndex
        let path = uri[..<pathEnd]
        let query = pathEnd < uri.endIndex ? uri[uri.index(after: pathEnd)...] : ""
        guard let (route, parameters) = router.match(path) else { return .notFound }
        if draining.isSet {
            return .reject(HandshakeRejection(status: 503, reason: "node draining; connect again"))
        }
        var request = HandshakeRequest(
            scope: Scope(
                path: String(path),
                parameters: parameters,
                query: Scope.parseQuery(query),
                headers: headers.map { (name: $0.name.lowercased(), value: $0.value) },
                clientAddress: clientAddress,
                queryString: String(query)
            )
        )
        for step in middleware {
            do {
                try await step.handshake(&request)
            } catch {
                return .reject(error)
            }
        }
        return .accept(route, request.scope)
    }

    /// Runs the handshake and, when it passes, the consumer's `connect()`; `nil` for a path no consumer serves.
    private func prepareConnection(_ head: HTTPRequestHead, channel: any Channel) async -> WebSocketConnection? {
        let result = await handshake(uri: head.uri, headers: head.headers, clientAddress: channel.remoteAddress?.description)
        let connection: WebSocketConnection
        switch result {
        case .notFound:
            return nil
        case .reject(let rejection):
            // A browser cannot read the HTTP status of a refused WebSocket, but it can read a close code:
            // accept, then close at once with 4000 + the status (503 becomes 1013) and the reason.
            metrics.refusedHandshakes.increment()
            connection = makeConnection(channel: channel, route: nil, scope: Scope(path: head.uri))
            let code = rejection.status == 503 ? CloseCode.tryAgainLater : CloseCode.rejectedHandshake(status: rejection.status)
            connection.refuse(code: code, reason: rejection.reason)
            return connection
        case .accept(let route, let scope):
            // Counted from here until the socket closes, whichever way the connection ends.
            guard admission.admit() else {
                metrics.refusedAtLimit.increment()
                metrics.refusedHandshakes.increment()
                connection = makeConnection(channel: channel, route: nil, scope: scope)
                connection.refuse(
                    code: CloseCode.tryAgainLater,
                    reason: "node at its connection limit (\(configuration.maxConnections)); connect again"
                )
                return connection
            }
            channel.closeFuture.whenComplete { [admission] _ in admission.release() }
            connection = makeConnection(channel: channel, route: route, scope: scope)
            await connection.prepare()
            // The upgrade may still fail (the client went away): then nobody runs the connection.
            channel.closeFuture.whenComplete { _ in connection.abandon() }
            return connection
        }
    }

    private func makeConnection(channel: any Channel, route: ConsumerRouter.Route?, scope: Scope) -> WebSocketConnection {
        WebSocketConnection(
            channel: channel, route: route, scope: scope, layer: layer, limits: configuration.limits, metrics: metrics,
            logger: logger, warnings: warnings, pingInterval: configuration.pingInterval,
            onClosed: { [connections, metrics, logger, logConnections = configuration.logConnections] connection in
                connections.remove(connection)
                metrics.connectionClosed()
                if logConnections {
                    logger.info(
                        "connection closed",
                        metadata: ["path": "\(connection.scope.path)", "client": "\(connection.scope.clientAddress ?? "-")", "channel": "\(connection.channelName)"]
                    )
                }
            }
        )
    }

    // MARK: - HTTP

    /// Decides a request from its head, before any of its body is read: only the API's authenticated
    /// requests to routes that take a body have one read; every other body is thrown away as it comes.
    private func examine(_ request: inout HTTPRequest) -> HeadDecision {
        let path = request.path
        if path == "/api" || path.hasPrefix("/api/") {
            guard let api else { return .answer(APIError.apiOff.answer) }
            return api.examine(&request)
        }
        guard request.head.method == .GET || request.head.method == .HEAD else {
            return .answer(.text(.methodNotAllowed, "only GET is served here\n", headers: ["Allow": "GET, HEAD"]))
        }
        return .ignoreBody
    }

    /// The admin page and its script and styles, each a file of its own: the page's policy allows no inline script or style.
    private static let adminFiles: [String: (type: String, bytes: [UInt8])] = [
        "/admin": ("text/html; charset=utf-8", PackageResources.admin_html),
        "/admin/": ("text/html; charset=utf-8", PackageResources.admin_html),
        "/admin/admin.js": ("text/javascript; charset=utf-8", PackageResources.admin_js),
        "/admin/admin.css": ("text/css; charset=utf-8", PackageResources.admin_css),
    ]

    private func answer(_ request: HTTPRequest, upgradeError: (any Error)?) async -> HTTPAnswer {
        let head = request.head
        let path = request.path
        if path == "/api" || path.hasPrefix("/api/") {
            guard let api else { return APIError.apiOff.answer }
            return await api.answer(request)
        }
        if let file = Self.adminFiles[path] {
            guard api != nil else {
                return .text(.notFound, "the admin page is off on this node: start it with --api-key-file PATH (or CHANNELS_API_KEYS)\n")
            }
            return HTTPAnswer(
                status: .ok,
                headers: [
                    "Content-Type": file.type, "Cache-Control": "no-store", "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
                    "Content-Security-Policy":
                        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
                    "Referrer-Policy": "no-referrer",
                ],
                body: ByteBuffer(bytes: file.bytes)
            )
        }
        if let page = pages[path] {
            return HTTPAnswer(
                status: .ok, headers: ["Content-Type": page.contentType, "Cache-Control": "no-store"], body: ByteBuffer(string: page.body)
            )
        }
        switch path {
        case "/channels.js":
            return HTTPAnswer(
                status: .ok, headers: ["Content-Type": "text/javascript; charset=utf-8", "Cache-Control": "max-age=300"],
                body: ByteBuffer(bytes: PackageResources.channels_js)
            )
        case "/healthz":
            return .text(.ok, "ok\n")
        case "/readyz":
            if draining.isSet { return .text(.serviceUnavailable, "draining\n") }
            return probe.isPassing ? .text(.ok, "ready\n") : .text(.serviceUnavailable, "channel layer round trip failing\n")
        case "/metrics":
            guard let metricsExport else { return .text(.notFound, "metrics are not enabled\n") }
            metrics.update(from: layer.statistics)
            return HTTPAnswer(status: .ok, headers: ["Content-Type": "text/plain; version=0.0.4; charset=utf-8"], body: ByteBuffer(string: metricsExport()))
        default:
            break
        }
        if case .denied(let status, let reason)? = upgradeError as? WebSocketHandshakeError {
            return .text(HTTPResponseStatus(statusCode: status), reason + "\n")
        }
        // A request to a WebSocket path that was not upgraded: say why.
        switch await handshake(uri: head.uri, headers: head.headers, clientAddress: nil) {
        case .notFound:
            return .text(.notFound, "not found\n")
        case .reject(let rejection):
            return .text(HTTPResponseStatus(statusCode: rejection.status), rejection.reason + "\n")
        case .accept:
            var handshakeError = upgradeError as? WebSocketHandshakeError
            if handshakeError == nil, head.headers["upgrade"].contains(where: { $0.lowercased() == "websocket" }) {
                // NIO skips the upgrader when a required header is missing: find out which.
                do { _ = try WebSocketUpgrader.acceptValue(for: head.headers) } catch { handshakeError = error }
            }
            switch handshakeError {
            case .unsupportedVersion:
                return .text(.upgradeRequired, WebSocketHandshakeError.unsupportedVersion.reason + "\n", headers: ["Sec-WebSocket-Version": "13"])
            case .some(let error):
                return .text(.badRequest, error.reason + "\n")
            case nil:
                return .text(.upgradeRequired, "this is a WebSocket endpoint: connect with a WebSocket client\n", headers: ["Sec-WebSocket-Version": "13"])
            }
        }
    }
}

/// A connection's place among those that have not upgraded, given back once.
private final class PendingSlot: Sendable {
    private let admission: ConnectionAdmission
    private let released = Atomic<Bool>(false)

    init(admission: ConnectionAdmission) {
        self.admission = admission
        _ = admission.admit()
    }

    func release() {
        if !released.exchange(true, ordering: .relaxed) { admission.release() }
    }
}

/// Hands the connection that the handshake prepared to the upgrade's pipeline step.
private final class PreparedConnection: Sendable {
    let connection = Mutex<WebSocketConnection?>(nil)
}

/// Why the node could not start or stopped, in words for an operator.
public struct NodeError: Error, CustomStringConvertible {
    public let message: String
    init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Where a node listens and the limits its connections follow.
public struct NodeConfiguration: Sendable {
    /// The address to bind (127.0.0.1 by default; 0.0.0.0 behind a load balancer).
    public var host: String
    /// The port to listen on.
    public var port: Int
    /// This node's id (in logs, the registry and the readiness probe's group).
    public var nodeID: String
    /// Per-connection limits and policies.
    public var limits: ConnectionLimits
    /// Browser origins allowed to connect; empty allows all.
    public var allowedOrigins: [String]
    /// How long a graceful shutdown may take.
    public var drainTime: Duration
    /// Connections closed per second while draining.
    public var drainCloseRate: Int
    /// How often the readiness probe checks the layer.
    public var readinessProbeInterval: Duration
    /// How often idle clients are pinged.
    public var pingInterval: Duration
    /// Open WebSocket connections (and upgrades in progress) the node accepts; 0 = no limit. Beyond it,
    /// handshakes are refused with HTTP 503 / close code 1013, so the load balancer tries another node.
    public var maxConnections: Int
    /// How long a connection may take to send a whole request head (after connecting, or after its
    /// previous answer) before it is closed.
    public var handshakeTimeout: Duration
    /// Connections that have not upgraded (nor finished a plain request) the node holds; more are closed
    /// at once. 0 = no limit.
    public var maxPendingHandshakes: Int
    /// Each socket's kernel send buffer in bytes (Linux doubles it for bookkeeping).
    public var socketSendBuffer: Int
    /// Whether to log one info line per WebSocket connection opened and closed (path, client, channel).
    public var logConnections = false

    public init(
        host: String = "127.0.0.1",
        port: Int = 8000,
        nodeID: String = "node",
        limits: ConnectionLimits = ConnectionLimits(),
        allowedOrigins: [String] = [],
        drainTime: Duration = .seconds(30),
        drainCloseRate: Int = 500,
        readinessProbeInterval: Duration = .seconds(2),
        pingInterval: Duration = .seconds(30),
        maxConnections: Int = 0,
        handshakeTimeout: Duration = .seconds(10),
        maxPendingHandshakes: Int = 1024,
        socketSendBuffer: Int = 128 * 1024
    ) {
        self.socketSendBuffer = socketSendBuffer
        self.handshakeTimeout = handshakeTimeout
        self.maxPendingHandshakes = maxPendingHandshakes
        self.host = host
        self.port = port
        self.nodeID = nodeID
        self.limits = limits
        self.allowedOrigins = allowedOrigins
        self.drainTime = drainTime
        self.drainCloseRate = drainCloseRate
        self.readinessProbeInterval = readinessProbeInterval
        self.pingInterval = pingInterval
        self.maxConnections = maxConnections
    }
}
