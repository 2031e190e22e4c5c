import ChannelLayers
import CoreMetrics
import HTTPTypes
import Hummingbird
import HummingbirdWebSocket
import Logging
import NIOCore
import NIOWebSocket
import ServiceLifecycle
import Synchronization

/// A WebSocket front node: serves consumers over WebSocket, the demo page, health, readiness and metrics.
///
/// Stateless: every connection's state lives in its consumer and the channel layer, so any client may
/// connect to any node and no load balancer needs sticky sessions.
///
/// On graceful shutdown (SIGTERM in `channels-node`): readiness turns false, new WebSocket upgrades are
/// refused with 503, open connections are closed with 1001 at ``NodeConfiguration/drainCloseRate`` per
/// second so that clients reconnect elsewhere gradually, their memberships are left, and ``run()`` returns
/// within ``NodeConfiguration/drainTime``.
public final class ChannelsNode: Service {
    /// The prefix of the group each node's readiness probe uses; keep it out of the registry
    /// (``RedisPubSubChannelLayer/Configuration/unlistedGroupPrefixes``).
    public static let probeGroupPrefix = "channels.probe."

    public let configuration: NodeConfiguration
    public let layer: any ChannelLayer
    private let layerRunner: (@Sendable () async throws -> Void)?
    private let router: ConsumerRouter
    private let middleware: [any HandshakeMiddleware]
    private let metricsExport: (@Sendable () -> String)?
    private let logger: Logger
    private let metrics = NodeMetrics()
    private let connections = ConnectionRegistry()
    private let probe: ReadinessProbe
    private let draining = Atomic<Bool>(false)
    private let admission: ConnectionAdmission

    /// Creates a node.
    /// - Parameters:
    ///   - layer: the channel layer consumers use.
    ///   - layerRunner: runs the layer for the node's lifetime (``RedisPubSubChannelLayer/run()``), if it needs it.
    ///   - router: which consumer serves which path.
    ///   - middleware: handshake steps, in order (an origin check is added from the configuration).
    ///   - metricsExport: renders the metrics for `/metrics` (Prometheus text); `nil` answers 404.
    public init(
        configuration: NodeConfiguration,
        layer: any ChannelLayer,
        layerRunner: (@Sendable () async throws -> Void)? = nil,
        router: ConsumerRouter,
        middleware: [any HandshakeMiddleware] = [],
        metricsExport: (@Sendable () -> String)? = nil,
        logger: Logger = Logger(label: "channels-node")
    ) {
        self.configuration = configuration
        self.layer = layer
        self.layerRunner = layerRunner
        self.router = router
        var steps = middleware
        if !configuration.allowedOrigins.isEmpty { steps.insert(OriginCheckMiddleware(allowed: configuration.allowedOrigins), at: 0) }
        self.middleware = steps
        self.metricsExport = metricsExport
        self.logger = logger
        self.admission = ConnectionAdmission(limit: configuration.maxConnections)
        self.probe = ReadinessProbe(layer: layer, nodeID: configuration.nodeID, interval: configuration.readinessProbeInterval)
    }

    /// Whether the node takes new connections: not draining, and the layer answered a round trip recently.
    public var isReady: Bool { !draining.load(ordering: .relaxed) && probe.isPassing }

    /// Open WebSocket connections.
    public var connectionCount: Int { connections.count }

    public func run() async throws {
        let app = Application(
            router: makeRouter(),
            server: .http1WebSocketUpgrade(configuration: webSocketConfiguration) { [self] request, channel, _ in
                await shouldUpgrade(request, channel: channel)
            },
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: nil),
            onServerRunning: { [logger, configuration] channel in
                logger.info(
                    "listening",
                    metadata: ["address": "\(channel.localAddress?.description ?? "?")", "node": "\(configuration.nodeID)"]
                )
            },
            logger: logger
        )
        // The HTTP server and the layer run outside the graceful-shutdown context: the node closes WebSockets
        // itself, paced and with 1001, instead of Hummingbird closing them all at once. The first of these
        // to report decides what happens: a graceful shutdown request drains, a failure is rethrown.
        let (outcomes, report) = AsyncStream.makeStream(of: Result<Void, any Error>.self)
        // Its own group, so that the server is stopped gracefully once the drain is done.
        let serverGroup = ServiceGroup(services: [app], logger: logger)
        let server = Task.detached {
            do {
                try await serverGroup.run()
                report.yield(.failure(ChannelLayerError(.closed, "the HTTP server stopped")))
            } catch {
                report.yield(.failure(error))
            }
        }
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
        // Inherits the service's task-locals, so it sees the ServiceGroup's graceful shutdown.
        let shutdownWatcher = Task {
            if (try? await gracefulShutdown()) != nil { report.yield(.success(())) }
        }
        defer {
            shutdownWatcher.cancel()
            probeTask.cancel()
            layerTask?.cancel()
            server.cancel()
        }
        var first: Result<Void, any Error>? = nil
        for await outcome in outcomes {
            first = outcome
            break
        }
        if case .failure(let error) = first { throw error }
        if first != nil { await drain() }
        probeTask.cancel()
        layerTask?.cancel()
        await layerTask?.value
        await serverGroup.triggerGracefulShutdown()
        await server.value
        logger.info("stopped", metadata: ["node": "\(configuration.nodeID)"])
    }

    private var webSocketConfiguration: HTTP1WebSocketUpgradeChannel.Configuration {
        .init(
            ws: WebSocketServerConfiguration(
                maxFrameSize: configuration.limits.maxMessageSize,
                autoPing: .enabled(timePeriod: configuration.pingInterval),
                closeTimeout: .seconds(3),
                validateUTF8: true
            )
        )
    }

    private func drain() async {
        draining.store(true, ordering: .relaxed)
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

    private func handshake(path fullPath: String, headers: HTTPFields, clientAddress: String?) async -> Handshake {
        let pathEnd = fullPath.firstIndex(of: "?") ?? fullPath.endIndex
        let path = fullPath[..<pathEnd]
        let query = pathEnd < fullPath.endIndex ? fullPath[fullPath.index(after: pathEnd)...] : ""
        guard let (route, parameters) = router.match(path) else { return .notFound }
        if draining.load(ordering: .relaxed) {
            return .reject(HandshakeRejection(status: 503, reason: "node draining; connect again"))
        }
        var request = HandshakeRequest(
            scope: Scope(
                path: String(path),
                parameters: parameters,
                query: Scope.parseQuery(query),
                headers: headers.map { (name: $0.name.canonicalName, value: $0.value) },
                clientAddress: clientAddress
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

    private func shouldUpgrade(
        _ request: HTTPRequest,
        channel: any Channel
    ) async -> ShouldUpgradeResult<WebSocketDataHandler<HTTP1WebSocketUpgradeChannel.Context>> {
        let result = await handshake(path: request.path ?? "/", headers: request.headerFields, clientAddress: channel.remoteAddress?.description)
        let route: ConsumerRouter.Route
        let scope: Scope
        switch result {
        case .notFound:
            // Hummingbird answers a refused upgrade with 400; a plain GET to the same path gets 404.
            return .dontUpgrade
        case .reject(let rejection):
            return refuse(rejection)
        case .accept(let acceptedRoute, let acceptedScope):
            route = acceptedRoute
            scope = acceptedScope
        }
        // Counted from here until the socket closes, whichever way the connection ends.
        guard admission.admit() else {
            metrics.refusedAtLimit.increment()
            return refuse(HandshakeRejection(status: 503, reason: "node at its connection limit (\(configuration.maxConnections)); connect again"))
        }
        channel.closeFuture.whenComplete { [admission] _ in admission.release() }
        let connection = WebSocketConnection(
            route: route, scope: scope, layer: layer, limits: configuration.limits, metrics: metrics, logger: logger,
            rawChannel: channel, registry: connections
        )
        guard let prepared = await connection.prepare() else {
            return .upgrade([:]) { _, outbound, _ in
                try? await outbound.close(WebSocketErrorCode(codeNumber: Int(CloseCode.internalError)), reason: "channel layer unavailable")
            }
        }
        return .upgrade([:]) { inbound, outbound, _ in
            try await connection.run(prepared, inbound: inbound, outbound: outbound)
        }
    }

    /// A browser cannot read the HTTP status of a refused WebSocket, but it can read a close code: accept,
    /// then close at once with 4000 + the status (4403, 4401...; 503 becomes 1013) and the reason.
    private func refuse(
        _ rejection: HandshakeRejection
    ) -> ShouldUpgradeResult<WebSocketDataHandler<HTTP1WebSocketUpgradeChannel.Context>> {
        metrics.refusedHandshakes.increment()
        return .upgrade([:]) { _, outbound, _ in
            let code = rejection.status == 503 ? CloseCode.tryAgainLater : CloseCode.rejectedHandshake(status: rejection.status)
            try? await outbound.close(WebSocketErrorCode(codeNumber: Int(code)), reason: String(rejection.reason.prefix(120)))
        }
    }

    // MARK: - HTTP

    private func makeRouter() -> Router<BasicRequestContext> {
        let router = Router()
        router.get("/") { _, _ in
            Response(
                status: .ok,
                headers: [.contentType: "text/html; charset=utf-8", .cacheControl: "no-store"],
                body: .init(byteBuffer: ByteBuffer(string: DemoPage.html))
            )
        }
        router.get("/healthz") { _, _ in
            Self.text(.ok, "ok\n")
        }
        router.get("/readyz") { [self] _, _ in
            if draining.load(ordering: .relaxed) { return Self.text(.serviceUnavailable, "draining\n") }
            return probe.isPassing ? Self.text(.ok, "ready\n") : Self.text(.serviceUnavailable, "channel layer round trip failing\n")
        }
        router.get("/metrics") { [self] _, _ in
            guard let metricsExport else { return Self.text(.notFound, "metrics are not enabled\n") }
            metrics.update(from: layer.statistics)
            return Response(
                status: .ok,
                headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(string: metricsExport()))
            )
        }
        // A request to a WebSocket path that was not upgraded: say why.
        router.get("**") { [self] request, _ in
            let result = await handshake(path: request.uri.description, headers: request.headers, clientAddress: nil)
            switch result {
            case .notFound:
                return Self.text(.notFound, "not found\n")
            case .reject(let rejection):
                return Self.text(HTTPResponse.Status(code: rejection.status), rejection.reason + "\n")
            case .accept:
                return Self.text(.upgradeRequired, "this is a WebSocket endpoint: connect with a WebSocket client\n")
            }
        }
        return router
    }

    private static func text(_ status: HTTPResponse.Status, _ body: String) -> Response {
        Response(status: status, headers: [.contentType: "text/plain; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: body)))
    }
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
        maxConnections: Int = 0
    ) {
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
