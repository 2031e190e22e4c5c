import ChannelLayers
import ChannelsProtocol
import CoreMetrics
import Logging
import NIOCore
import PerMessageDeflate
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
/// inbox for its channel (``ClientConnection``), with no task while it is idle.
///
/// On graceful shutdown (SIGTERM in `channels-node`): readiness turns false, new WebSocket upgrades are
/// refused with 503, open connections are closed with 1001 at ``NodeConfiguration/drainCloseRate`` per
/// second so that clients reconnect elsewhere gradually, their memberships are left, and ``run()`` returns
/// within ``NodeConfiguration/drainTime``.
public final class ChannelsNode: Service {
    /// The prefix of the group each node's readiness probe uses; keep it out of the registry
    /// (the Redis layers' `unlistedGroupPrefixes`).
    public static let probeGroupPrefix = "channels.probe."

    /// The nodes' own groups (the readiness probe's, the control group): give these to the Redis layer's
    /// the Redis layers' `unlistedGroupPrefixes`; listings and the API leave them out.
    public static let unlistedGroupPrefixes = [probeGroupPrefix, NodeControl.group]

    /// This build's version: the one place a release sets it. The API's node reports, the admin page, the
    /// OpenAPI document and `channels-node --version` show it.
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
    public let layer: any InboxChannelLayer
    let layerRunner: (@Sendable () async throws -> Void)?
    let router: ConsumerRouter
    let middleware: [any HandshakeMiddleware]
    let pages: [String: Page]
    let metricsExport: (@Sendable () -> String)?
    let logger: Logger
    let warnings: WarningLimiter
    let metrics = NodeMetrics()
    let connections = ConnectionRegistry()
    let outboundBudget: OutboundBudget
    let probe: ReadinessProbe
    let draining = DrainingFlag()
    let admission: ConnectionAdmission
    let pendingHandshakes = ConnectionAdmission(limit: 0)
    let acceptFailureLogged = Atomic<Bool>(false)
    let eventLoopGroup: any EventLoopGroup
    let control: NodeControlService
    /// Slows publishers into groups whose readers fell behind, here or on other nodes.
    let pressure: PublishPressure
    /// What the node's connections share.
    let connectionEnvironment: ConnectionEnvironment
    let api: ServerAPI?
    let layerName: String
    let startedAt = WallClock.now()

    /// Creates a node.
    /// - Parameters:
    ///   - layer: the channel layer consumers use.
    ///   - layerRunner: runs the layer for the node's lifetime (a Redis layer's `run()`), if it needs it.
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
        layer: any InboxChannelLayer,
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
        self.outboundBudget = OutboundBudget(limit: configuration.maxNodeQueuedBytes, connections: connections, metrics: metrics, warnings: warnings)
        self.probe = ReadinessProbe(layer: layer, nodeID: configuration.nodeID, interval: configuration.readinessProbeInterval)
        self.layerName = layerName ?? (layer is InMemoryChannelLayer ? "memory" : String(describing: type(of: layer)))
        let report = NodeReport(
            nodeID: configuration.nodeID, layerName: self.layerName, startedAt: startedAt, layer: layer, metrics: metrics,
            connections: connections, probe: probe, draining: draining, apiEnabled: api.isEnabled
        )
        self.pressure = PublishPressure(nodeID: configuration.nodeID, grace: configuration.limits.slowReaderGrace, metrics: metrics)
        self.connectionEnvironment = Self.connectionEnvironment(
            configuration: configuration, layer: layer, metrics: metrics, logger: logger, warnings: warnings, pressure: pressure,
            connections: connections
        )
        self.control = NodeControlService(
            layer: layer, nodeID: configuration.nodeID, connections: connections, pressure: pressure, logger: logger
        ) { report.make() }
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
        let budgetTask = Task.detached { [outboundBudget] in await outboundBudget.run() }
        // Inherits the service's task-locals, so it sees the ServiceGroup's graceful shutdown.
        let shutdownWatcher = Task {
            if (try? await gracefulShutdown()) != nil { report.yield(.success(())) }
        }
        defer {
            shutdownWatcher.cancel()
            probeTask.cancel()
            controlTask.cancel()
            meterTask.cancel()
            budgetTask.cancel()
            layerTask?.cancel()
        }
        var first: Result<Void, any Error>? = nil
        for await outcome in outcomes {
            first = outcome
            break
        }
        if case .failure(let error) = first {
            try? await server.close()
            connectionEnvironment.stopPings()
            throw error
        }
        if first != nil { await drain() }
        try? await server.close()
        connectionEnvironment.stopPings()
        probeTask.cancel()
        controlTask.cancel()
        meterTask.cancel()
        budgetTask.cancel()
        layerTask?.cancel()
        await layerTask?.value
        logger.info("stopped", metadata: ["node": "\(configuration.nodeID)"])
    }

    func bind() async throws -> any Channel {
        let limits = configuration.limits
        let bootstrap = ServerBootstrap(group: eventLoopGroup)
            .serverChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    // Out of file descriptors: stop accepting for a second instead of spinning, keep serving
                    // the open connections, count it, say it once.
                    try channel.pipeline.syncOperations.addHandler(AcceptPauseHandler { [self] error in
                        metrics.acceptFailures.increment()
                        if !acceptFailureLogged.exchange(true, ordering: .relaxed) {
                            logger.error("cannot accept connections (\(error)); pausing accepts for a second at a time; raise the open-file limit or lower --max-connections")
                        }
                    })
                }
            }
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            // A small kernel send buffer keeps a non-reading client's backlog where the node counts it
            // (the outbound buffer, --max-queued-bytes) instead of megabytes hidden in the kernel.
            .childChannelOption(.socketOption(.so_sndbuf), value: SocketOptionValue(configuration.socketSendBuffer))
            .childChannelOption(.writeBufferWaterMark, value: .init(low: limits.softQueuedBytes / 2, high: limits.softQueuedBytes))
            // Each connection keeps its last receive buffer between reads: NIO's 2 KiB start was a fifth of an idle
            // connection's memory. Reads of larger frames grow it as they come (a long handshake takes two reads).
            .childChannelOption(.recvAllocator, value: ReceiveBufferSizer())
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
    func initialize(_ channel: any Channel) throws {
        // Connections that have not upgraded are capped: each costs a socket and a parser, and sends nothing useful yet.
        if configuration.maxPendingHandshakes > 0, pendingHandshakes.count >= configuration.maxPendingHandshakes {
            metrics.pendingHandshakeRefusals.increment()
            channel.close(promise: nil)
            return
        }
        let ticket = ConnectionTicket(pending: pendingHandshakes, closing: channel)
        let http = HTTPRequestHandler(
            headTimeout: TimeAmount(configuration.handshakeTimeout),
            onTimeout: { [metrics] in metrics.handshakeTimeouts.increment() },
            onBadRequest: { [metrics] in metrics.badRequests.increment() },
            // A stream (the API's events) is a connection of its own kind, under its own limit.
            onStream: { ticket.releasePending() },
            examine: { [self] request in examine(&request) }
        ) { [self] request, upgradeError in await answer(request, upgradeError: upgradeError, channel: channel, ticket: ticket) }
        let prepared = PreparedConnection()
        let upgrader = WebSocketUpgrader(
            shouldUpgrade: { [self] channel, head in
                let promise = channel.eventLoop.makePromise(of: HTTPHeaders?.self)
                promise.completeWithTask {
                    guard let connection = await self.prepareConnection(head, channel: channel, ticket: ticket) else { return nil }
                    if let denial = connection.denial {
                        // No WebSocket: the HTTP handler answers with the consumer's status.
                        self.metrics.refusedHandshakes.increment()
                        connection.abandon()
                        throw WebSocketHandshakeError.denied(status: denial.status, reason: denial.reason)
                    }
                    prepared.connection.withLock { $0 = connection }
                    var headers = HTTPHeaders(connection.handshakeHeaders.map { ($0.name, $0.value) })
                    if self.configuration.limits.compression, PerMessageDeflate.accepts(offers: head.headers["sec-websocket-extensions"]) {
                        headers.add(name: "Sec-WebSocket-Extensions", value: PerMessageDeflate.response)
                        try await channel.eventLoop.submit { connection.deflate = true }.get()
                        self.metrics.compressedConnections.increment()
                    }
                    return headers
                }
                return promise.futureResult
            },
            installHandlers: { [self] channel, _ in
                channel.eventLoop.makeCompletedFuture {
                    guard let connection = prepared.connection.withLock({ $0 }) else { throw WebSocketHandshakeError.notAWebSocketPath }
                    // The connection reads the client's frames itself (``ClientFrameReader``): no decoder steps.
                    try channel.pipeline.syncOperations.addHandler(connection)
                    ticket.releasePending()
                    connections.add(connection)
                    metrics.connectionOpened()
                    if configuration.logConnections {
                        logger.info(
                            "connection opened",
                            metadata: ["path": "\(connection.scope.path)", "client": "\(connection.scope.clientAddress ?? "-")", "user": "\(connection.scope.userID ?? "-")"]
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

    static let httpHandlerName = "channels.http"

    func drain() async {
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

    // MARK: - HTTP

    /// The admin page and its script and styles, each a file of its own: the page's policy allows no inline script or style.
    static let adminFiles: [String: (type: String, bytes: [UInt8])] = [
        "/admin": ("text/html; charset=utf-8", PackageResources.admin_html),
        "/admin/": ("text/html; charset=utf-8", PackageResources.admin_html),
        "/admin/admin.js": ("text/javascript; charset=utf-8", PackageResources.admin_js),
        "/admin/admin.css": ("text/css; charset=utf-8", PackageResources.admin_css),
    ]

}

/// Hands the connection that the handshake prepared to the upgrade's pipeline step.
private final class PreparedConnection: Sendable {
    let connection = Mutex<ClientConnection?>(nil)
}
