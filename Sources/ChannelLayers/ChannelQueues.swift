import ChannelsProtocol
import DequeModule
import Synchronization

/// The bounded message queues of the channels this process holds, shared by both layers.
///
/// A queue keeps at most `capacity` messages, each for at most `expiry`. A message for a channel with a
/// waiting receiver is handed over directly. Fan-out to many channels takes the lock once.
package final class ChannelQueues: Sendable {
    typealias Waiter = CheckedContinuation<Result<Message, ChannelLayerError>, Never>

    private struct Entry {
        let message: Message
        let expiresAt: ContinuousClock.Instant
    }

    private struct Queue {
        var entries: Deque<Entry> = []
        var waiters: Deque<(id: Int, continuation: Waiter)> = []
        /// Created by `newChannel` or `receive`: kept even when empty, until deleted.
        var registered: Bool
    }

    private struct State {
        var queues: [String: Queue] = [:]
        var nextWaiterID = 0
        var deliveries = 0
        var dropped = 0
        var expired = 0
    }

    package enum PutResult {
        case delivered
        case full
        case noSuchChannel
    }

    package let capacity: Int
    package let expiry: Duration
    private let state = Mutex(State())

    package init(capacity: Int, expiry: Duration) {
        self.capacity = capacity
        self.expiry = expiry
    }

    /// Registers a channel of this process.
    package func register(_ channel: String) {
        state.withLock { state in
            if state.queues[channel] == nil {
                state.queues[channel] = Queue(registered: true)
            } else {
                state.queues[channel]!.registered = true
            }
        }
    }

    package func isRegistered(_ channel: String) -> Bool {
        state.withLock { $0.queues[channel]?.registered == true }
    }

    package var registeredCount: Int { state.withLock { $0.queues.values.lazy.filter(\.registered).count } }

    package var counters: (deliveries: Int, dropped: Int, expired: Int) {
        state.withLock { ($0.deliveries, $0.dropped, $0.expired) }
    }

    /// Puts a message on one channel; `create` makes a queue for an unknown channel (the in-memory layer).
    package func put(_ message: Message, on channel: String, create: Bool) -> PutResult {
        let now = ContinuousClock.now
        let (result, waiter): (PutResult, Waiter?) = state.withLock { state in
            if state.queues[channel] == nil {
                guard create else { return (.noSuchChannel, nil) }
                state.queues[channel] = Queue(registered: false)
            }
            return Self.put(message, channel: channel, now: now, expiry: expiry, capacity: capacity, state: &state)
        }
        waiter?.resume(returning: .success(message))
        return result
    }

    /// Puts a message on every channel given that this process holds; full queues miss it.
    /// Returns how many took it.
    @discardableResult
    package func putMany(_ message: Message, on channels: some Sequence<String>) -> Int {
        let now = ContinuousClock.now
        var waiters: [Waiter] = []
        let delivered = state.withLock { state in
            var delivered = 0
            for channel in channels where state.queues[channel] != nil {
                let (result, waiter) = Self.put(message, channel: channel, now: now, expiry: expiry, capacity: capacity, state: &state)
                if let waiter { waiters.append(waiter) }
                if case .delivered = result { delivered += 1 }
            }
            return delivered
        }
        for waiter in waiters { waiter.resume(returning: .success(message)) }
        return delivered
    }

    private static func put(
        _ message: Message,
        channel: String,
        now: ContinuousClock.Instant,
        expiry: Duration,
        capacity: Int,
        state: inout State
    ) -> (PutResult, Waiter?) {
        if let waiter = state.queues[channel]!.waiters.popFirst() {
            state.deliveries += 1
            return (.delivered, waiter.continuation)
        }
        state.expired += prune(&state.queues[channel]!, now: now)
        guard state.queues[channel]!.entries.count < capacity else {
            state.dropped += 1
            return (.full, nil)
        }
        state.queues[channel]!.entries.append(Entry(message: message, expiresAt: now + expiry))
        state.deliveries += 1
        return (.delivered, nil)
    }

    private static func prune(_ queue: inout Queue, now: ContinuousClock.Instant) -> Int {
        var removed = 0
        while let first = queue.entries.first, first.expiresAt <= now {
            queue.entries.removeFirst()
            removed += 1
        }
        return removed
    }

    /// Takes up to `limit` queued messages of `channel` at once, or waits for the next one when none is
    /// queued; registers the channel if needed.
    package func receive(from channel: String, upTo limit: Int) async -> Result<[Message], ChannelLayerError> {
        // Queued messages are taken without suspending; only an empty queue makes a waiter.
        let queued = state.withLock { state in Self.take(upTo: limit, from: channel, now: .now, state: &state) }
        if let queued { return queued }
        let id = state.withLock { state in
            defer { state.nextWaiterID += 1 }
            return state.nextWaiterID
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: Waiter) in
                // A message may have arrived since the first look: take it rather than wait.
                let ready = state.withLock { state in
                    let ready = Self.take(upTo: 1, from: channel, now: .now, state: &state)
                    if ready == nil { state.queues[channel]!.waiters.append((id, continuation)) }
                    return ready
                }
                if let ready { continuation.resume(returning: ready.map { $0[0] }) }
            }
        } onCancel: {
            let waiter = state.withLock { state -> Waiter? in
                guard let index = state.queues[channel]?.waiters.firstIndex(where: { $0.id == id }) else { return nil }
                return state.queues[channel]!.waiters.remove(at: index).continuation
            }
            waiter?.resume(returning: .failure(ChannelLayerError(.cancelled, "receive on \(channel) was cancelled")))
        }.map { [$0] }
    }

    /// Up to `limit` queued messages of `channel` (registered if new), a cancellation failure, or `nil` when
    /// the queue is empty.
    private static func take(
        upTo limit: Int, from channel: String, now: ContinuousClock.Instant, state: inout State
    ) -> Result<[Message], ChannelLayerError>? {
        if Task.isCancelled { return .failure(ChannelLayerError(.cancelled, "receive on \(channel) was cancelled")) }
        if state.queues[channel] == nil { state.queues[channel] = Queue(registered: true) }
        state.expired += prune(&state.queues[channel]!, now: now)
        let count = min(limit, state.queues[channel]!.entries.count)
        guard count > 0 else { return nil }
        let messages = state.queues[channel]!.entries.prefix(count).map(\.message)
        state.queues[channel]!.entries.removeFirst(count)
        dropIfUnused(channel, state: &state)
        return .success(messages)
    }

    /// Removes a channel; its waiting receivers fail with ``ChannelLayerError/Code/closed``.
    package func remove(_ channel: String) {
        let waiters = state.withLock { state in state.queues.removeValue(forKey: channel)?.waiters ?? [] }
        for waiter in waiters {
            waiter.continuation.resume(returning: .failure(ChannelLayerError(.closed, "channel \(channel) was deleted")))
        }
    }

    /// Removes every channel.
    package func removeAll() {
        let queues = state.withLock { state in
            defer { state.queues = [:] }
            return state.queues
        }
        for (channel, queue) in queues {
            for waiter in queue.waiters {
                waiter.continuation.resume(returning: .failure(ChannelLayerError(.closed, "channel \(channel) was flushed")))
            }
        }
    }

    /// Unregistered queues (made by a send to a channel nobody holds yet) go once drained.
    private static func dropIfUnused(_ channel: String, state: inout State) {
        if let queue = state.queues[channel], !queue.registered, queue.entries.isEmpty, queue.waiters.isEmpty {
            state.queues[channel] = nil
        }
    }
}
