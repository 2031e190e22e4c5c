import Synchronization

/// The bytes of API request bodies a node holds at once, over all its connections.
///
/// A body is counted from its request head, before any of it is read: its declared `Content-Length`, or the
/// largest body allowed when it comes in chunks, until its request is answered. A head whose body does not
/// fit is refused at once (503), so no number of clients, even with valid keys, makes the node buffer more.
final class BodyBudget: Sendable {
    /// The most bytes held at once.
    let limit: Int
    private let used = Mutex(0)

    init(limit: Int) {
        self.limit = limit
    }

    /// Bytes held now.
    var inFlight: Int { used.withLock { $0 } }

    /// Takes `bytes` from the budget; `nil` when they do not fit.
    func reserve(_ bytes: Int) -> Reservation? {
        let taken = used.withLock { used in
            guard bytes <= limit - used else { return false }
            used += bytes
            return true
        }
        return taken ? Reservation(budget: self, bytes: bytes) : nil
    }

    fileprivate func giveBack(_ bytes: Int) {
        used.withLock { $0 -= bytes }
    }

    /// Bytes taken from a ``BodyBudget``: given back by ``release()``, or when the last reference goes.
    final class Reservation: Sendable {
        let bytes: Int
        private let budget: BodyBudget
        private let released = Atomic(false)

        fileprivate init(budget: BodyBudget, bytes: Int) {
            self.budget = budget
            self.bytes = bytes
        }

        func release() {
            if !released.exchange(true, ordering: .relaxed) { budget.giveBack(bytes) }
        }

        deinit { release() }
    }
}
