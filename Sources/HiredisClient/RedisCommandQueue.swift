import DequeModule
import NIOCore
import Synchronization

/// The pipeline of one command connection: encoded commands waiting to be written, and the callers
/// waiting for replies, in the order the commands were sent.
///
/// Callers on any thread append under a lock; the event loop takes everything appended since the last
/// write in one buffer, so many concurrent callers share one `write` system call. Redis answers in
/// order, so the first waiter owns the next reply.
final class RedisCommandQueue: Sendable {
    typealias SingleContinuation = UnsafeContinuation<Result<RedisReply, RedisError>, Never>
    typealias BatchContinuation = UnsafeContinuation<Result<[RedisReply], RedisError>, Never>
    typealias ReplyHandler = @Sendable (Result<RedisReply, RedisError>) -> Void

    /// Replies collected for a pipelined batch; mutated only while the queue's lock is held.
    final class Batch: @unchecked Sendable {
        let continuation: BatchContinuation
        let expected: Int
        var replies: [RedisReply] = []
        init(continuation: BatchContinuation, expected: Int) {
            self.continuation = continuation
            self.expected = expected
            replies.reserveCapacity(expected)
        }
    }

    enum Waiter {
        case single(SingleContinuation, deadline: NIODeadline?)
        case batch(Batch, deadline: NIODeadline?)
        /// A caller that did not wait: its handler runs on the event loop when the reply comes (on a failure, on
        /// the thread that fails the queue).
        case handler(ReplyHandler, deadline: NIODeadline?)
        /// Timed out: its remaining replies are read and dropped so later callers stay matched.
        case abandoned(remaining: Int)

        var deadline: NIODeadline? {
            switch self {
            case .single(_, let deadline), .batch(_, let deadline), .handler(_, let deadline): deadline
            case .abandoned: nil
            }
        }
    }

    private struct State {
        var outbound: ByteBuffer
        var waiters: Deque<Waiter> = []
        var flushScheduled = false
        /// When the timeout timer fires next; `nil` when none is scheduled.
        var armedDeadline: NIODeadline?
        var closedError: RedisError?
        /// Waiters at the end of ``waiters`` whose commands are still in ``outbound``: never written.
        var unwritten = 0
    }

    enum EnqueueResult {
        case failed(RedisError)
        case scheduleFlush
        case queued
    }

    private let state: Mutex<State>

    init(allocator: ByteBufferAllocator) {
        state = Mutex(State(outbound: allocator.buffer(capacity: 4096)))
    }

    func enqueue(_ encoded: ByteBuffer, waiter: Waiter) -> EnqueueResult {
        state.withLock { state in
            if let error = state.closedError { return .failed(error.notSent()) }
            state.outbound.writeImmutableBuffer(encoded)
            state.waiters.append(waiter)
            state.unwritten += 1
            if state.flushScheduled { return .queued }
            state.flushScheduled = true
            return .scheduleFlush
        }
    }

    func enqueue(_ commands: [RedisCommand], waiter: Waiter) -> EnqueueResult {
        state.withLock { state in
            if let error = state.closedError { return .failed(error.notSent()) }
            for command in commands { state.outbound.writeImmutableBuffer(command.encoded) }
            state.waiters.append(waiter)
            state.unwritten += 1
            if state.flushScheduled { return .queued }
            state.flushScheduled = true
            return .scheduleFlush
        }
    }

    /// Takes everything queued since the last write. Also says whether a timeout timer should be armed,
    /// and for when.
    func takeOutbound(allocator: ByteBufferAllocator) -> (ByteBuffer, armTimerAt: NIODeadline?) {
        state.withLock { state in
            var fresh = allocator.buffer(capacity: max(4096, state.outbound.readableBytes))
            swap(&fresh, &state.outbound)
            state.flushScheduled = false
            state.unwritten = 0
            var armAt: NIODeadline?
            if let deadline = state.waiters.lazy.compactMap(\.deadline).first,
                state.armedDeadline.map({ deadline < $0 }) ?? true
            {
                state.armedDeadline = deadline
                armAt = deadline
            }
            return (fresh, armAt)
        }
    }

    /// Matches one reply to the oldest waiter. Returns `false` when no one waits for it (a protocol violation).
    func deliver(_ reply: RedisReply) -> Bool {
        enum Resume {
            case single(SingleContinuation)
            case batch(BatchContinuation, [RedisReply])
            case handler(ReplyHandler)
            case none
            case unexpected
        }
        let resume: Resume = state.withLock { state in
            guard let first = state.waiters.first else { return .unexpected }
            switch first {
            case .single(let continuation, _):
                state.waiters.removeFirst()
                return .single(continuation)
            case .handler(let handler, _):
                state.waiters.removeFirst()
                return .handler(handler)
            case .batch(let batch, _):
                batch.replies.append(reply)
                guard batch.replies.count == batch.expected else { return .none }
                state.waiters.removeFirst()
                return .batch(batch.continuation, batch.replies)
            case .abandoned(let remaining):
                if remaining > 1 {
                    state.waiters[state.waiters.startIndex] = .abandoned(remaining: remaining - 1)
                } else {
                    state.waiters.removeFirst()
                }
                return .none
            }
        }
        switch resume {
        case .single(let continuation): continuation.resume(returning: .success(reply))
        case .batch(let continuation, let replies): continuation.resume(returning: .success(replies))
        case .handler(let handler): handler(.success(reply))
        case .none: break
        case .unexpected: return false
        }
        return true
    }

    /// Fails every waiter whose deadline has passed, keeping its place so its reply is dropped later.
    /// Returns whether any expired, and the next deadline to wait for, or `nil` when no timer should follow
    /// this one (nothing waits, or this timer was superseded by an earlier one that keeps its own chain).
    func expire(now: NIODeadline, firedFor: NIODeadline, error: RedisError) -> (expired: Bool, next: NIODeadline?) {
        var expired: [Waiter] = []
        let next: NIODeadline? = state.withLock { state in
            var index = state.waiters.startIndex
            while index < state.waiters.endIndex {
                let waiter = state.waiters[index]
                guard let deadline = waiter.deadline else {
                    index += 1
                    continue
                }
                guard deadline <= now else { break }
                expired.append(waiter)
                switch waiter {
                case .single, .handler: state.waiters[index] = .abandoned(remaining: 1)
                case .batch(let batch, _): state.waiters[index] = .abandoned(remaining: batch.expected - batch.replies.count)
                case .abandoned: break
                }
                index += 1
            }
            let next = state.waiters[index...].lazy.compactMap(\.deadline).first
            guard state.armedDeadline == firedFor else { return nil }
            state.armedDeadline = next
            return next
        }
        Self.fail(expired, with: error)
        return (!expired.isEmpty, next)
    }

    /// Fails every waiter and refuses new commands from now on. Waiters whose commands were never written
    /// fail with an error that says so (``RedisError/mayHaveRun`` is `false`).
    func close(with error: RedisError) {
        let (waiters, unwritten): (Deque<Waiter>, Int) = state.withLock { state in
            if state.closedError == nil { state.closedError = error }
            defer {
                state.waiters.removeAll()
                state.unwritten = 0
                state.outbound.clear()
            }
            return (state.waiters, state.unwritten)
        }
        let written = waiters.count - unwritten
        Self.fail(waiters.prefix(written), with: error.mayHaveRunAnyway())
        Self.fail(waiters.suffix(unwritten), with: error.notSent())
    }

    var isClosed: Bool { state.withLock { $0.closedError != nil } }

    var isIdle: Bool { state.withLock { $0.waiters.isEmpty && $0.outbound.readableBytes == 0 } }

    private static func fail(_ waiters: some Sequence<Waiter>, with error: RedisError) {
        for waiter in waiters {
            switch waiter {
            case .single(let continuation, _): continuation.resume(returning: .failure(error))
            case .batch(let batch, _): batch.continuation.resume(returning: .failure(error))
            case .handler(let handler, _): handler(.failure(error))
            case .abandoned: break
            }
        }
    }
}
