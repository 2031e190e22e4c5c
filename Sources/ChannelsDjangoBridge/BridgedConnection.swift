import ChannelsNode
import ChannelsProtocol
import CoreMetrics
import DequeModule
import OrderedCollections
import Synchronization

/// The node's side of one bridged connection: its events to the worker (numbered, within the window) and the
/// worker's actions (put back in order), handed to the connection's own task to apply.
///
/// Actions are applied only by the connection's task (the consumer's `connect()` until it accepted, its
/// mailbox after): the context they use is the consumer's, one event at a time. Actions that arrive while that
/// task is idle wake it through the connection's mailbox (``BridgeWire/wake``); while it waits for room in the
/// window it applies them itself, so a worker waiting for a `done` never waits on a full window.
final class BridgedConnection: Sendable {
    /// The connection's channel: its name on both sides.
    let name: String
    /// The worker serving it, for its life.
    let worker: String
    /// Sends an item to the worker (its link).
    private let emit: @Sendable (MessageValue) -> Void
    /// Closes the socket, from any thread.
    private let close: @Sendable (UInt16, String) -> Void
    /// Wakes the connection's task through its mailbox.
    private let wake: @Sendable () -> Void
    /// Holds (`true`) or releases reading the client's socket; only schedules that, so it may run under `state`'s lock.
    private let hold: @Sendable (Bool) -> Void
    private let metrics: DjangoBridgeMetrics
    private let window: Int64
    private let state = Mutex(State())

    enum Phase {
        case connecting
        case open
        case ended
    }

    private struct State {
        var phase = Phase.connecting
        /// Numbered events sent, and how many the application took.
        var sent: Int64 = 0
        var taken: Int64 = 0
        var sentAt = Deque<ContinuousClock.Instant>()
        var nextAction: Int64 = 1
        var early: [Int64: BridgeWire.Action] = [:]
        var holeSince: ContinuousClock.Instant?
        var ready = Deque<(seq: Int64, action: BridgeWire.Action)>()
        var waiter: CheckedContinuation<Void, Never>?
        var wakePending = false
        var timedOut = false
        /// Why the connection cannot go on (its worker was lost, events were lost); set once.
        var lost: String?
        /// The application instance ended (the worker will take no more events).
        var applicationEnded = false
        /// Events waiting for room in the window, in order; while any wait, the client's socket is not read.
        var pending = Deque<BridgeWire.Event>()
        var readingHeld = false
    }

    /// What ``submit(_:)`` did with an event.
    enum Submitted {
        /// Sent to the worker.
        case sent
        /// Waits for room in the window (the worker is behind); the client is not read meanwhile.
        case waiting
        /// More than ``maxPending`` wait: the connection is too far behind its worker.
        case overflow
        /// The connection is lost or ended: dropped.
        case dropped
    }

    /// Events that may wait for the window before the connection is closed as slow (4008): what the
    /// client sent before its socket stopped being read, and layer messages for the application.
    static let maxPending = 1024

    /// What the connection's task should do next.
    enum Step {
        case actions([(seq: Int64, action: BridgeWire.Action)])
        case lost(String)
        case timedOut
        case progress
    }

    init(
        name: String, worker: String, window: Int, metrics: DjangoBridgeMetrics, emit: @escaping @Sendable (MessageValue) -> Void,
        close: @escaping @Sendable (UInt16, String) -> Void, wake: @escaping @Sendable () -> Void,
        hold: @escaping @Sendable (Bool) -> Void = { _ in }
    ) {
        self.name = name
        self.worker = worker
        self.window = Int64(window)
        self.metrics = metrics
        self.emit = emit
        self.close = close
        self.wake = wake
        self.hold = hold
    }

    /// A connection of a node's socket: items go to the worker's link, closes and wake-ups to the socket.
    convenience init(name: String, worker: String, handle: ConnectionHandle, link: WorkerLink, metrics: DjangoBridgeMetrics, window: Int) {
        self.init(
            name: name, worker: worker, window: window, metrics: metrics, emit: { link.enqueue($0) },
            close: { handle.close(code: $0, reason: $1) }, wake: { handle.deliverToSelf(["type": .string(BridgeWire.wake)]) },
            hold: { $0 ? handle.holdReading() : handle.releaseReading() }
        )
    }

    // MARK: - The connection's task

    /// Sends a numbered event to the worker.
    func send(_ event: BridgeWire.Event) {
        let seq = state.withLock { state -> Int64 in
            state.sent += 1
            state.sentAt.append(.now)
            return state.sent
        }
        metrics.events.increment()
        emit(event.item(connection: name, seq: seq))
    }

    /// Sends an event to the worker now if the window has room and nothing waits before it, or keeps it, in
    /// order, until the worker takes more (``took(_:)`` sends it then): the connection's task never waits on
    /// its worker, so frames of forward rules and actions keep flowing while the client is slowed by TCP.
    func submit(_ event: BridgeWire.Event) -> Submitted {
        let (outcome, item) = state.withLock { state -> (Submitted, MessageValue?) in
            guard state.lost == nil, state.phase != .ended else { return (.dropped, nil) }
            if state.pending.isEmpty, state.sent - state.taken < window {
                state.sent += 1
                state.sentAt.append(.now)
                return (.sent, event.item(connection: name, seq: state.sent))
            }
            guard state.pending.count < Self.maxPending else { return (.overflow, nil) }
            state.pending.append(event)
            if !state.readingHeld {
                state.readingHeld = true
                // Under the lock (`hold` only schedules on the event loop): a release by `took` on another
                // thread is then always scheduled after this hold, never before it.
                hold(true)
            }
            return (.waiting, nil)
        }
        if let item {
            metrics.events.increment()
            emit(item)
        }
        return outcome
    }

    /// Confirms group call `action` to the worker.
    func sendDone(action: Int64, error: String?) {
        emit(BridgeWire.Event.done(action: action, error: error).item(connection: name, seq: 0))
    }

    /// Waits until there are actions to apply, the connection is lost or the connect deadline passed;
    /// `.progress` when woken for nothing of that.
    func next() async -> Step {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let resumeNow = state.withLock { state -> Bool in
                if state.lost != nil || (state.timedOut && state.phase == .connecting) || !state.ready.isEmpty {
                    return true
                }
                state.waiter = continuation
                return false
            }
            if resumeNow { continuation.resume() }
        }
        return state.withLock { state -> Step in
            if let lost = state.lost { return .lost(lost) }
            if !state.ready.isEmpty {
                let actions = Array(state.ready)
                state.ready.removeAll()
                return .actions(actions)
            }
            if state.timedOut && state.phase == .connecting { return .timedOut }
            return .progress
        }
    }

    /// The actions waiting, for the mailbox's wake-up; clears the wake-up so the next actions send another.
    func takeReady() -> [(seq: Int64, action: BridgeWire.Action)] {
        state.withLock { state in
            state.wakePending = false
            let actions = Array(state.ready)
            state.ready.removeAll()
            return actions
        }
    }

    /// Puts actions the task took but did not apply back in front of the queue.
    func requeue(_ actions: [(seq: Int64, action: BridgeWire.Action)]) {
        guard !actions.isEmpty else { return }
        state.withLock { state in state.ready.insert(contentsOf: actions, at: 0) }
    }

    /// `connect()` accepted: from now on idle moments are woken through the mailbox.
    func opened() {
        let wake = state.withLock { state -> Bool in
            state.phase = .open
            guard !state.ready.isEmpty, !state.wakePending else { return false }
            state.wakePending = true
            return true
        }
        if wake { self.wake() }
    }

    /// The application instance returned: no events go to it any more.
    func applicationEnded() {
        state.withLock { $0.applicationEnded = true }
    }

    /// The socket closed: tells the worker (unless it is gone or already ended) and stops applying actions.
    ///
    /// What still waited for the window goes first, past the window (at most ``maxPending``): the client sent
    /// it before it left, and under Daphne the application would receive it before `websocket.disconnect`.
    func disconnected(code: UInt16) {
        let (items, tell) = state.withLock { state -> ([MessageValue], Bool) in
            defer { state.phase = .ended }
            state.ready.removeAll()
            let tell = state.lost == nil && !state.applicationEnded
            var items: [MessageValue] = []
            if tell {
                let now = ContinuousClock.now
                while let event = state.pending.popFirst() {
                    state.sent += 1
                    state.sentAt.append(now)
                    items.append(event.item(connection: name, seq: state.sent))
                }
            }
            state.pending.removeAll()
            return (items, tell)
        }
        for item in items {
            metrics.events.increment()
            emit(item)
        }
        if tell { send(.disconnect(code: code)) }
    }

    // MARK: - From the bridge's inbox and timers

    /// An action of the worker, number `seq`: queued in order, or held until the ones before it came.
    func received(_ seq: Int64, _ action: BridgeWire.Action) {
        let (waiter, wake) = state.withLock { state -> (CheckedContinuation<Void, Never>?, Bool) in
            guard state.phase != .ended, seq >= state.nextAction, state.early[seq] == nil else { return (nil, false) }
            if seq > state.nextAction {
                state.early[seq] = action
                if state.holeSince == nil { state.holeSince = .now }
                return (nil, false)
            }
            state.ready.append((seq, action))
            state.nextAction += 1
            while let next = state.early.removeValue(forKey: state.nextAction) {
                state.ready.append((state.nextAction, next))
                state.nextAction += 1
            }
            state.holeSince = state.early.isEmpty ? nil : .now
            if let waiter = state.waiter {
                state.waiter = nil
                return (waiter, false)
            }
            guard state.phase == .open, !state.wakePending else { return (nil, false) }
            state.wakePending = true
            return (nil, true)
        }
        waiter?.resume()
        if wake { self.wake() }
    }

    /// The application took `count` events so far.
    func took(_ count: Int64) {
        let (latencies, items) = state.withLock { state -> ([Duration], [MessageValue]) in
            guard count > state.taken else { return ([], []) }
            let now = ContinuousClock.now
            var latencies: [Duration] = []
            for _ in state.taken..<min(count, state.sent) {
                if let sentAt = state.sentAt.popFirst() { latencies.append(now - sentAt) }
            }
            state.taken = count
            // Room again: what waited goes now, numbered in order (the worker puts items back in order).
            var items: [MessageValue] = []
            while state.sent - state.taken < window, state.lost == nil, state.phase != .ended, let event = state.pending.popFirst() {
                state.sent += 1
                state.sentAt.append(now)
                items.append(event.item(connection: name, seq: state.sent))
            }
            if state.readingHeld && state.pending.isEmpty {
                state.readingHeld = false
                // Under the lock, in the order of the state's changes (see `submit`).
                hold(false)
            }
            return (latencies, items)
        }
        for latency in latencies { metrics.eventLatency.recordNanoseconds(latency.nanoseconds) }
        for item in items {
            metrics.events.increment()
            emit(item)
        }
    }

    /// The connection cannot go on: its task stops waiting; an open socket closes with 1012 (reconnect).
    /// - Returns: whether this call lost it (it was not lost or ended before).
    @discardableResult
    func lose(_ why: String) -> Bool {
        let (waiter, close, first) = state.withLock { state -> (CheckedContinuation<Void, Never>?, Bool, Bool) in
            guard state.lost == nil, state.phase != .ended else { return (nil, false, false) }
            state.lost = why
            let waiter = state.waiter
            state.waiter = nil
            return (waiter, state.phase == .open, true)
        }
        waiter?.resume()
        if close { self.close(1012, why) }
        return first
    }

    /// The connect deadline passed.
    func timeOut() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.timedOut = true
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
    }

    /// Whether a hole in the worker's actions has stayed open longer than `limit`.
    func holeOpen(longerThan limit: Duration, at now: ContinuousClock.Instant) -> Bool {
        state.withLock { state in state.holeSince.map { now - $0 > limit } ?? false }
    }
}

extension Duration {
    var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}
