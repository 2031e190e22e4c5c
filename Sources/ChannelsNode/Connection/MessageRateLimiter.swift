/// A token bucket for one connection's inbound messages: `perSecond` on average, `burst` at once.
struct MessageRateLimiter {
    private let perSecond: Double
    private let burst: Double
    private var tokens: Double
    private var last: ContinuousClock.Instant

    /// `perSecond` 0 or less lets everything through.
    init(perSecond: Double, burst: Int, now: ContinuousClock.Instant = .now) {
        self.perSecond = perSecond
        self.burst = Double(max(1, burst))
        self.tokens = self.burst
        self.last = now
    }

    /// Takes a token; `false` when the client is over its rate.
    mutating func allow(now: ContinuousClock.Instant = .now) -> Bool {
        guard perSecond > 0 else { return true }
        tokens = min(burst, tokens + (now - last) / .seconds(1) * perSecond)
        last = now
        guard tokens >= 1 else { return false }
        tokens -= 1
        return true
    }
}
