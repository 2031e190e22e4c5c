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
    let pings: PingWheels
    /// Called on the event loop once a connection's socket closed.
    let onClosed: @Sendable (ClientConnection) -> Void
    private let executors = Mutex<[ObjectIdentifier: EventLoopTaskExecutor]>([:])

    init(
        layer: any InboxChannelLayer, limits: ConnectionLimits, metrics: NodeMetrics, logger: Logger, warnings: WarningLimiter,
        pingInterval: Duration, pressure: PublishPressure, onClosed: @escaping @Sendable (ClientConnection) -> Void
    ) {
        self.layer = layer
        self.limits = limits
        self.metrics = metrics
        self.logger = logger
        self.warnings = warnings
        self.pressure = pressure
        self.pings = PingWheels(interval: pingInterval)
        self.onClosed = onClosed
    }

    /// Where the consumer tasks of `eventLoop`'s connections run: on that loop.
    func executor(for eventLoop: any EventLoop) -> EventLoopTaskExecutor {
        executors.withLock { executors in
            if let executor = executors[ObjectIdentifier(eventLoop)] { return executor }
            let executor = EventLoopTaskExecutor(eventLoop)
            executors[ObjectIdentifier(eventLoop)] = executor
            return executor
        }
    }
}
