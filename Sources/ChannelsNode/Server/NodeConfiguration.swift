import ChannelLayers

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
    /// Bytes waiting in all connections' outbound buffers together before the largest backlogs are closed
    /// with 4008 (each connection also has ``ConnectionLimits/maxQueuedBytes``); 0 = no node-wide bound.
    public var maxNodeQueuedBytes = 1024 * 1024 * 1024
    /// How long an event loop holds what a drain of layer messages wrote to its clients before it flushes,
    /// so that messages arriving meanwhile share the socket writes; zero flushes at once. Under load this
    /// saves a quarter of a node's CPU per delivery; a quiet node adds it to each message's latency.
    public var flushDelay: Duration = .microseconds(50)

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
