import NIOCore
import Synchronization

/// What a connection holds of the node until its socket closes: a place among the handshakes in progress, a
/// place under the connection limit once admitted, and its prepared ``ClientConnection``, abandoned if the
/// upgrade never completes. One close callback gives all of it back: a callback for each, the object of the
/// first and the list they grew were some 250 bytes of every idle connection.
final class ConnectionTicket: Sendable {
    private struct State {
        var closed = false
        var pending: ConnectionAdmission?
        var admitted: ConnectionAdmission?
        var prepared: ClientConnection?
    }

    private let state: Mutex<State>

    /// Takes a place among the handshakes in progress (`pending`), given back by ``releasePending()`` or when
    /// `channel` closes, whichever comes first.
    init(pending: ConnectionAdmission, closing channel: any Channel) {
        _ = pending.admit()
        state = Mutex(State(pending: pending))
        channel.closeFuture.whenComplete { [self] _ in channelClosed() }
    }

    /// The handshake is over (upgraded, or the request is answered as a stream): its place goes back.
    func releasePending() {
        state.withLock { state in
            defer { state.pending = nil }
            return state.pending
        }?.release()
    }

    /// Takes a place under `admission`'s limit until the socket closes; `false` when the node is full.
    func admit(to admission: ConnectionAdmission) -> Bool {
        guard admission.admit() else { return false }
        let closed = state.withLock { state in
            if !state.closed { state.admitted = admission }
            return state.closed
        }
        if closed { admission.release() }
        return true
    }

    /// `connection` ran `connect()`: if the socket closes before the upgrade completes, nobody runs it, so it
    /// is abandoned then (its consumer still gets `disconnect`, its channel goes).
    func prepared(_ connection: ClientConnection) {
        let closed = state.withLock { state in
            if !state.closed { state.prepared = connection }
            return state.closed
        }
        if closed { connection.abandon() }
    }

    private func channelClosed() {
        let held = state.withLock { state in
            defer { state = State(closed: true) }
            return state
        }
        held.pending?.release()
        held.admitted?.release()
        held.prepared?.abandon()
    }
}
