import Synchronization

/// Counts the connections a node took against its limit.
///
/// A connection is admitted before its consumer is made and released when its socket closes, so
/// upgrades in progress count too and a burst of handshakes cannot overshoot the limit.
final class ConnectionAdmission: Sendable {
    /// 0 = no limit.
    let limit: Int
    private let admitted = Atomic<Int>(0)

    init(limit: Int) {
        self.limit = limit
    }

    /// Takes a place; `false` when the node is full.
    func admit() -> Bool {
        guard limit > 0 else {
            admitted.add(1, ordering: .relaxed)
            return true
        }
        var current = admitted.load(ordering: .relaxed)
        while current < limit {
            let (exchanged, original) = admitted.compareExchange(expected: current, desired: current + 1, ordering: .relaxed)
            if exchanged { return true }
            current = original
        }
        return false
    }

    func release() {
        admitted.subtract(1, ordering: .relaxed)
    }

    var count: Int { admitted.load(ordering: .relaxed) }
}
