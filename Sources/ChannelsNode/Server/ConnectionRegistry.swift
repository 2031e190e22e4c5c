import Synchronization

/// The live connections of a node, so that a drain can close them.
final class ConnectionRegistry: Sendable {
    private let state = Mutex((next: 0, queues: [Int: OutboundQueue]()))

    func add(_ queue: OutboundQueue) -> Int {
        state.withLock { state in
            defer { state.next += 1 }
            state.queues[state.next] = queue
            return state.next
        }
    }

    func remove(_ id: Int) {
        _ = state.withLock { $0.queues.removeValue(forKey: id) }
    }

    var count: Int { state.withLock { $0.queues.count } }

    /// Closes every connection with `code`, `perSecond` at a time, so clients reconnect elsewhere gradually.
    func closeAll(code: UInt16, reason: String, perSecond: Int, until deadline: ContinuousClock.Instant) async {
        let queues = state.withLock { Array($0.queues.values) }
        let batch = max(1, perSecond / 20)
        for (index, queue) in queues.enumerated() {
            queue.close(code: code, reason: reason)
            if (index + 1) % batch == 0 {
                if ContinuousClock.now >= deadline { break }
                try? await Task.sleep(for: .milliseconds(50))
            }
        }
        // Whatever the pacing did not reach before the deadline is closed now.
        for queue in queues { queue.close(code: code, reason: reason) }
    }
}
