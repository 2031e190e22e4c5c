import Synchronization

/// One token bucket per API key (``MessageRateLimiter``, as for clients' messages), on this node.
final class APIRateLimiter: Sendable {
    private let buckets: Mutex<[MessageRateLimiter]>
    let perSecond: Double

    init(keys: Int, perSecond: Double, burst: Int) {
        self.perSecond = perSecond
        buckets = Mutex(Array(repeating: MessageRateLimiter(perSecond: perSecond, burst: burst), count: keys))
    }

    /// Takes a token for key `index`; `false` when the key is over its rate.
    func allow(key index: Int) -> Bool {
        buckets.withLock { buckets in
            guard buckets.indices.contains(index) else { return false }
            return buckets[index].allow()
        }
    }
}
