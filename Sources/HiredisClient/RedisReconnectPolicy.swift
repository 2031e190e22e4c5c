/// How long to wait between reconnection attempts: exponential backoff with jitter, capped.
///
/// Jitter spreads the reconnects of many nodes after a Redis restart so they do not arrive at once.
public struct RedisReconnectPolicy: Sendable, Hashable {
    /// The delay before the first retry.
    public var initialDelay: Duration
    /// The longest delay between two attempts.
    public var maximumDelay: Duration
    /// The factor applied to the delay after each failed attempt.
    public var multiplier: Double
    /// The fraction of each delay that is randomised (0 = none, 0.2 = ±20%).
    public var jitter: Double

    /// Creates a policy; the defaults retry within 2 s at the latest.
    public init(
        initialDelay: Duration = .milliseconds(50),
        maximumDelay: Duration = .seconds(2),
        multiplier: Double = 2,
        jitter: Double = 0.2
    ) {
        self.initialDelay = initialDelay
        self.maximumDelay = maximumDelay
        self.multiplier = multiplier
        self.jitter = jitter
    }

    /// The delay before retry number `attempt` (1 for the first retry).
    public func delay(forAttempt attempt: Int) -> Duration {
        let base = initialDelay / .seconds(1) * Foundationless.pow(multiplier, max(0, attempt - 1))
        let capped = min(base, maximumDelay / .seconds(1))
        let spread = capped * jitter
        let value = spread > 0 ? capped + Double.random(in: -spread...spread) : capped
        return .nanoseconds(Int64(max(0, min(value, maximumDelay / .seconds(1))) * 1e9))
    }
}

enum Foundationless {
    static func pow(_ base: Double, _ exponent: Int) -> Double {
        var result = 1.0
        for _ in 0..<min(exponent, 64) { result *= base }
        return result
    }
}
