import ChannelLayers
import HiredisClient
import Synchronization

/// Keeps Redis subscriptions in step with what the process wants, one Redis channel at a time.
///
/// Joins and leaves for the same group can race (the first member joining while the last one leaves).
/// Each channel has at most one driver task that compares wanted and actual and issues SUBSCRIBE or
/// UNSUBSCRIBE until they agree, so the outcome never depends on which call reached Redis first.
/// Callers of ``want(_:)`` return once the subscription is confirmed by Redis.
final class SubscriptionReconciler: Sendable {
    typealias Waiter = CheckedContinuation<Result<Void, ChannelLayerError>, Never>

    private struct Entry {
        var wanted = false
        var active = false
        var driving = false
        var waiters: [Waiter] = []
    }

    private let entries = Mutex<[String: Entry]>([:])
    private let subscribe: @Sendable (String) async throws(RedisError) -> Void
    private let unsubscribe: @Sendable (String) async throws(RedisError) -> Void

    init(
        subscribe: @escaping @Sendable (String) async throws(RedisError) -> Void,
        unsubscribe: @escaping @Sendable (String) async throws(RedisError) -> Void
    ) {
        self.subscribe = subscribe
        self.unsubscribe = unsubscribe
    }

    /// Wants `name` subscribed and waits until Redis confirmed it.
    func want(_ name: String) async throws(ChannelLayerError) {
        let result = await withCheckedContinuation { (continuation: Waiter) in
            enum Next { case done, drive, wait }
            let next: Next = entries.withLock { entries in
                var entry = entries[name] ?? Entry()
                entry.wanted = true
                defer { entries[name] = entry }
                if entry.active && !entry.driving { return .done }
                entry.waiters.append(continuation)
                if entry.driving { return .wait }
                entry.driving = true
                return .drive
            }
            switch next {
            case .done: continuation.resume(returning: .success(()))
            case .drive: Task { await self.drive(name) }
            case .wait: break
            }
        }
        try result.get()
    }

    /// No longer wants `name`; the UNSUBSCRIBE happens in the background.
    func unwant(_ name: String) {
        let startDriver = entries.withLock { entries -> Bool in
            guard var entry = entries[name] else { return false }
            entry.wanted = false
            defer { entries[name] = entry }
            guard !entry.driving, entry.active else {
                if !entry.driving, !entry.active, entry.waiters.isEmpty { entries[name] = nil }
                return false
            }
            entry.driving = true
            return true
        }
        if startDriver { Task { await self.drive(name) } }
    }

    /// Forgets everything (after a flush); the caller unsubscribes from Redis itself.
    func reset() {
        let waiters = entries.withLock { entries in
            defer { entries = [:] }
            return entries.values.flatMap(\.waiters)
        }
        for waiter in waiters { waiter.resume(returning: .failure(ChannelLayerError(.closed, "the layer was flushed"))) }
    }

    var activeCount: Int { entries.withLock { $0.values.lazy.filter(\.active).count } }

    private func drive(_ name: String) async {
        while true {
            enum Step { case subscribe, unsubscribe, finish([Waiter]) }
            let step: Step = entries.withLock { entries in
                guard var entry = entries[name] else { return .finish([]) }
                if entry.wanted && !entry.active { return .subscribe }
                if !entry.wanted && entry.active { return .unsubscribe }
                entry.driving = false
                let waiters = entry.waiters
                entry.waiters = []
                entries[name] = entry.wanted || entry.active ? entry : nil
                return .finish(waiters)
            }
            switch step {
            case .finish(let waiters):
                for waiter in waiters { waiter.resume(returning: .success(())) }
                return
            case .subscribe:
                do {
                    try await subscribe(name)
                    entries.withLock { $0[name]?.active = true }
                } catch {
                    // A timeout leaves the subscription requested in the subscriber, which makes it once Redis
                    // is back; any other failure (an ACL refusal) means it will not happen. Either way the
                    // callers waiting now hear about it.
                    let waiters: [Waiter] = entries.withLock { entries in
                        guard var entry = entries[name] else { return [] }
                        entry.active = error.code == .timeout
                        if !entry.active { entry.wanted = false }
                        let waiters = entry.waiters
                        entry.waiters = []
                        entries[name] = entry
                        return waiters
                    }
                    let failure = ChannelLayerError(error, doing: "subscribing to \(name)")
                    for waiter in waiters { waiter.resume(returning: .failure(failure)) }
                }
            case .unsubscribe:
                try? await unsubscribe(name)
                entries.withLock { $0[name]?.active = false }
            }
        }
    }
}
