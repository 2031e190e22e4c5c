import ChannelsProtocol
import Synchronization

/// A layer that can start a group send without waiting for it to be confirmed, keeping call order.
///
/// Over Redis a confirmed ``ChannelLayer/groupSend(_:to:)`` costs a round trip. A consumer that waits for each
/// sends a room's messages one round trip apart, and each member then gets them one write at a time. Started
/// here, a consumer's sends are queued back to back, in the order they were started, and confirmed later.
public protocol PipelinedGroupSendLayer: ChannelLayer {
    /// Queues `message` for `group` in order with the sends started before it, and returns its receipt; or
    /// returns nil when it cannot be queued at once (no live connection), and the caller sends it with
    /// ``ChannelLayer/groupSend(_:to:)``.
    /// - Throws: what ``ChannelLayer/groupSend(_:to:)`` throws before sending (invalid names, messages).
    func startGroupSend(_ message: Message, to group: String) throws(ChannelLayerError) -> GroupSendReceipt?
}

/// The confirmation of a group send started with ``PipelinedGroupSendLayer/startGroupSend(_:to:)``.
public final class GroupSendReceipt: Sendable {
    private enum State {
        /// Who waits for the outcome: ``confirmed()``'s continuations and ``onFailure(_:)``'s handlers alike.
        case pending([@Sendable (ChannelLayerError?) -> Void])
        case done(ChannelLayerError?)
    }

    private let state = Mutex(State.pending([]))

    package init() {}

    /// Records the outcome: nil when the layer took the message. Only the first outcome counts.
    package func complete(_ error: ChannelLayerError?) {
        let waiting: [@Sendable (ChannelLayerError?) -> Void] = state.withLock { state in
            guard case .pending(let waiting) = state else { return [] }
            state = .done(error)
            return waiting
        }
        for handler in waiting { handler(error) }
    }

    /// Waits until the layer took the message.
    /// - Throws: the error the send failed with.
    public func confirmed() async throws(ChannelLayerError) {
        let outcome: ChannelLayerError? = await withCheckedContinuation { continuation in
            whenDone { continuation.resume(returning: $0) }
        }
        if let outcome { throw outcome }
    }

    /// Runs `handler` if the send fails (at once when it failed already); never when it succeeds.
    public func onFailure(_ handler: @escaping @Sendable (ChannelLayerError) -> Void) {
        whenDone { error in
            if let error { handler(error) }
        }
    }

    /// Whether the outcome is known.
    public var isComplete: Bool {
        state.withLock { if case .done = $0 { return true } else { return false } }
    }

    /// Runs `handler` with the outcome: once it is known, or at once when it is already.
    private func whenDone(_ handler: @escaping @Sendable (ChannelLayerError?) -> Void) {
        let known: ChannelLayerError?? = state.withLock { state in
            switch state {
            case .done(let error): return .some(error)
            case .pending(var waiting):
                waiting.append(handler)
                state = .pending(waiting)
                return .none
            }
        }
        if case .some(let error) = known { handler(error) }
    }
}
