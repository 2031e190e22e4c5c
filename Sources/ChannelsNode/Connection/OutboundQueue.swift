import DequeModule
import Synchronization

/// The frames waiting to go to one client, bounded in count and bytes.
///
/// Enqueueing never waits: a client that does not read fills its own queue and is closed with
/// ``CloseCode/slowClient``; no other connection and no layer delivery is delayed by it. The sender takes
/// everything queued at once, so frames that pile up under load go out together.
final class OutboundQueue: Sendable {
    enum Frame: Sendable {
        case text(String)
        case binary([UInt8])

        var size: Int {
            switch self {
            case .text(let text): text.utf8.count
            case .binary(let bytes): bytes.count
            }
        }
    }

    enum Batch: Sendable {
        case frames([Frame])
        case close(code: UInt16, reason: String)
    }

    enum EnqueueResult {
        case queued
        /// The queue was full: the caller must close the connection as a slow client.
        case overflow
        /// Closing already.
        case closed
    }

    private struct State {
        var frames: Deque<Frame> = []
        var bytes = 0
        var waiter: CheckedContinuation<Batch?, Never>?
        var closing: (code: UInt16, reason: String)?
        var finished = false
    }

    let maxMessages: Int
    let maxBytes: Int
    private let state = Mutex(State())

    init(maxMessages: Int, maxBytes: Int) {
        self.maxMessages = maxMessages
        self.maxBytes = maxBytes
    }

    func enqueue(_ frame: Frame) -> EnqueueResult {
        let (result, waiter): (EnqueueResult, CheckedContinuation<Batch?, Never>?) = state.withLock { state in
            if state.closing != nil || state.finished { return (.closed, nil) }
            if state.frames.count >= maxMessages || state.bytes + frame.size > maxBytes {
                return (.overflow, nil)
            }
            if let waiter = state.waiter {
                state.waiter = nil
                return (.queued, waiter)
            }
            state.frames.append(frame)
            state.bytes += frame.size
            return (.queued, nil)
        }
        waiter?.resume(returning: .frames([frame]))
        return result
    }

    /// Asks the sender to close with `code` after what is queued (or at once, dropping it, when `discard`).
    func close(code: UInt16, reason: String, discard: Bool = false) {
        let waiter: CheckedContinuation<Batch?, Never>? = state.withLock { state in
            guard state.closing == nil else { return nil }
            state.closing = (code, reason)
            if discard {
                state.frames = []
                state.bytes = 0
            }
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(returning: .close(code: code, reason: reason))
    }

    /// Ends the queue without a close frame (the connection is gone).
    func finish() {
        let waiter: CheckedContinuation<Batch?, Never>? = state.withLock { state in
            state.finished = true
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(returning: nil)
    }

    var closingCode: UInt16? { state.withLock { $0.closing?.code } }

    /// Frames that fit before the queue is full (at least 1, so that a full queue is still noticed).
    var room: Int { max(1, maxMessages - state.withLock { $0.frames.count }) }

    /// Everything queued, then the close; `nil` once finished.
    func next() async -> Batch? {
        await withCheckedContinuation { (continuation: CheckedContinuation<Batch?, Never>) in
            let ready: Batch?? = state.withLock { state in
                if !state.frames.isEmpty {
                    defer {
                        state.frames = []
                        state.bytes = 0
                    }
                    return .some(.frames(Array(state.frames)))
                }
                if let closing = state.closing { return .some(.close(code: closing.code, reason: closing.reason)) }
                if state.finished { return .some(nil) }
                state.waiter = continuation
                return nil
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }
}
