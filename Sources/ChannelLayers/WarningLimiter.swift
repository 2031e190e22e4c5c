import Logging
import Synchronization

/// Logs a warning at most once per message text every `interval`, saying how many were held back, so that
/// one bad publisher cannot fill the log (50 publishes into a 200-member room once wrote 10,000 lines).
/// The full counts are in the node's metrics.
package final class WarningLimiter: Sendable {
    private let logger: Logger
    private let interval: Duration
    private let seen = Mutex<[String: (last: ContinuousClock.Instant, held: Int)]>([:])

    package init(logger: Logger, interval: Duration = .seconds(10)) {
        self.logger = logger
        self.interval = interval
    }

    package func warn(_ message: String, metadata: Logger.Metadata = [:]) {
        let now = ContinuousClock.now
        let held: Int? = seen.withLock { seen in
            if let entry = seen[message], now - entry.last < interval {
                seen[message]!.held += 1
                return nil
            }
            defer { seen[message] = (now, 0) }
            return seen[message]?.held ?? 0
        }
        guard let held else { return }
        var metadata = metadata
        if held > 0 { metadata["held_back"] = "\(held)" }
        logger.warning("\(message)", metadata: metadata)
    }
}
