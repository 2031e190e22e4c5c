import HiredisClient

/// The core layer's receive loop decisions, without I/O: re-queue what a previous run left in flight
/// before the first pop, acknowledge each batch with the next pop, and tell a lost connection (written
/// memberships may be gone with Redis' data: write them again once back) from Redis refusing to read the
/// queue (a key of the wrong type: retry slower, memberships intact) and from what retrying cannot fix.
struct CoreReceiveState {
    /// Whether what a previous run left in the in-flight set was re-queued since the last connection loss.
    private(set) var restored = false
    /// Bodies taken by the last pop: removed from the in-flight set with the next one.
    private(set) var unacknowledged: [[UInt8]] = []
    /// Connection losses in a row, and refusals in a row; both end with a pop that succeeds.
    private(set) var losses = 0
    private(set) var refusals = 0
    private var rewriteMemberships = false

    /// Before a pop: whether to re-queue the in-flight set first, and whether memberships must be written anew.
    var needsRestore: Bool { !restored }

    /// The in-flight set was re-queued; returns whether to write the memberships again (Redis came back).
    mutating func restoredInFlight() -> Bool {
        restored = true
        defer { rewriteMemberships = false }
        return rewriteMemberships
    }

    /// A pop answered (with these bodies, maybe none): they are acknowledged by the next one.
    mutating func popped(_ bodies: [[UInt8]]) {
        unacknowledged = bodies
        losses = 0
        refusals = 0
    }

    enum Failure: Equatable {
        /// Stop the layer: bad credentials, or an ACL without the commands the layer needs.
        case fatal
        /// Redis answered with an error reply: retry after the `attempt`th refusal backoff.
        case refused(attempt: Int)
        /// The connection was lost: reconnect after the `attempt`th backoff; `first` says to report it.
        case lost(attempt: Int, first: Bool)
    }

    mutating func failed(_ error: RedisError) -> Failure {
        guard error.isRetryable, error.serverMessage?.hasPrefix("NOPERM") != true else { return .fatal }
        if error.code == .errorReply {
            refusals += 1
            return .refused(attempt: refusals)
        }
        losses += 1
        restored = false
        rewriteMemberships = true
        return .lost(attempt: losses, first: losses == 1)
    }
}
