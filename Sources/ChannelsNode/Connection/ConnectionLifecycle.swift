/// The RFC 6455 close handshake and the ping timeout of one connection, without I/O: the connection asks
/// what to do and does it (writes a close frame, closes the socket, sends a ping).
///
/// - The node closes: one close frame, then the socket closes when the client answers or a timeout passes.
/// - The client closes: the node answers with the client's code, then closes the socket.
/// - A client that sent nothing at all, not even a pong, for a whole ping interval is gone without a FIN.
struct ConnectionLifecycle {
    enum State: Equatable {
        case open
        /// A close frame was sent; waiting for the client's, or the timeout.
        case closing
        case closed
    }

    private(set) var state = State.open
    /// The code the consumer's `disconnect` gets: the one sent or received; 1006 when the socket just went.
    private(set) var endCode = CloseCode.abnormal
    private var heardSincePing = true

    var isOpen: Bool { state == .open }

    /// The node closes with `code`: whether to write a close frame (only the first close does).
    mutating func close(code: UInt16) -> Bool {
        guard state == .open else { return false }
        state = .closing
        endCode = code
        return true
    }

    enum PeerClose: Equatable {
        /// Answer with a close frame carrying this code, then close the socket.
        case answer(UInt16)
        /// The client answered the node's close frame: close the socket.
        case closeSocket
    }

    /// The client's close frame arrived, with its code if it had one.
    mutating func peerClosed(code: UInt16?) -> PeerClose {
        guard state == .open else { return .closeSocket }
        let code = code ?? CloseCode.normal
        state = .closing
        endCode = code
        return .answer(code)
    }

    /// Any frame from the client proves it is there.
    mutating func heard() {
        heardSincePing = true
    }

    enum PingDue: Equatable {
        /// Not open: nothing to do.
        case none
        case ping
        /// Nothing since the last ping: close with ``CloseCode/pingTimeout``.
        case timedOut
    }

    mutating func pingDue() -> PingDue {
        guard state == .open else { return .none }
        guard heardSincePing else { return .timedOut }
        heardSincePing = false
        return .ping
    }

    /// The socket closed; returns whether the connection had been closed before (never upgraded).
    mutating func socketClosed() -> Bool {
        defer { state = .closed }
        return state == .closed
    }

    /// The upgrade never completed (the client left first): whether there is anything to forget.
    mutating func abandon() -> Bool {
        guard state == .open else { return false }
        state = .closed
        return true
    }
}
