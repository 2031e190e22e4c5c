import ChannelLayers
import Logging
import NIOCore
import Synchronization

/// What every connection of a node shares, held once by the node and referenced by each connection: an
/// idle connection keeps only its own state (its socket, its consumer, its mailbox), not copies of the
/// node's limits, logger and services.
final class ConnectionEnvironment: Sendable {
    let layer: any InboxChannelLayer
    let limits: ConnectionLimits
    let metrics: NodeMetrics
    let logger: Logger
    let warnings: WarningLimiter
    let pressure: PublishPressure
    /// Called on the event loop once a connection's socket closed.
    let onClosed: @Sendable (ClientConnection) -> Void
    private let pingInterval: TimeAmount
    private let flushDelay: TimeAmount
    private let loops = Mutex<[ObjectIdentifier: LoopServices]>([:])

    init(
        layer: any InboxChannelLayer, limits: ConnectionLimits, metrics: NodeMetrics, logger: Logger, warnings: WarningLimiter,
        pingInterval: Duration, flushDelay: Duration = .zero, pressure: PublishPressure, onClosed: @escaping @Sendable (ClientConnection) -> Void
    ) {
        self.layer = layer
        self.limits = limits
        self.metrics = metrics
        self.logger = logger
        self.warnings = warnings
        self.pressure = pressure
        self.pingInterval = TimeAmount(pingInterval)
        self.flushDelay = TimeAmount(flushDelay)
        self.onClosed = onClosed
    }

    /// The services `eventLoop`'s connections share.
    func services(for eventLoop: any EventLoop) -> LoopServices {
        loops.withLock { loops in
            if let services = loops[ObjectIdentifier(eventLoop)] { return services }
            let services = LoopServices(eventLoop: eventLoop, pingInterval: pingInterval, flushDelay: flushDelay)
            loops[ObjectIdentifier(eventLoop)] = services
            return services
        }
    }

    /// Stops every loop's ping timer (the node stopped); from any thread.
    func stopPings() {
        let all = loops.withLock { Array($0.values) }
        for services in all { services.pingWheel.stopOnItsLoop() }
    }
}
