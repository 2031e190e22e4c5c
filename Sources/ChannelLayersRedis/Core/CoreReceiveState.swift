import HiredisClient

/// The core layer's receive loop decisions, without I/O.
///
/// - Before the first step, and after each lost connection, re-queue what a previous run left in flight.
/// - While the queue has entries, each step is one script (``CoreWire/takeBatchScript``, one round trip):
///   it acknowledges the previous batch, pops the next one into the in-flight set and takes the missed
///   record. Only when a step took nothing does the loop block in `BZPOPMIN`; the entry that wakes it is
///   recorded in flight by the next step, before it is delivered with that step's batch.
/// - Tell a lost connection (written memberships may be gone with Redis' data: write them again once back)
///   from Redis refusing to read the queue (a key of the wrong type: retry slower, memberships intact) and
///   from what retrying cannot fix.
struct CoreReceiveState {
    /// An entry `BZPOPMIN` took: its body and its score as Redis wrote it.
    struct Entry: Equatable {
        var body: [UInt8]
        var score: String
    }

    /// What the loop does next.
    enum Step: Equatable {
        /// Re-queue the in-flight set (after acknowledging ``unacknowledged`` in the same round trip).
        case restore
        /// Run the batch script, popping up to `limit` entries besides ``waiting``.
        case takeBatch(limit: Int)
        /// The queue was empty: block in `BZPOPMIN`.
        case wait
    }

    /// Whether what a previous run left in the in-flight set was re-queued since the last connection loss.
    private(set) var restored = false
    /// Bodies of the last batch, delivered and still in the in-flight set: removed by the next step.
    private(set) var unacknowledged: [[UInt8]] = []
    /// What the last `BZPOPMIN` took, kept until a batch script recorded it in flight (through failures:
    /// it is in no Redis key meanwhile, so dropping it would lose it).
    private(set) var waiting: Entry?
    /// Connection losses in a row, and refusals in a row; both end with a step that succeeds.
    private(set) var losses = 0
    private(set) var refusals = 0
    /// Whether the last batch took nothing from the queue.
    private var drained = false
    private var rewriteMemberships = false

    /// The next step, with `batch` the most entries one step delivers.
    func next(batch: Int) -> Step {
        if !restored { return .restore }
        if drained { return .wait }
        // The entry BZPOPMIN took counts in its batch.
        return .takeBatch(limit: max(0, max(1, batch) - (waiting == nil ? 0 : 1)))
    }

    /// The in-flight set was re-queued, the unacknowledged bodies removed from it first; returns whether
    /// to write the memberships again (Redis came back).
    mutating func restoredInFlight() -> Bool {
        restored = true
        unacknowledged = []
        drained = false
        defer { rewriteMemberships = false }
        return rewriteMemberships
    }

    /// A batch script answered with what it popped (maybe nothing). Returns the bodies to deliver, in
    /// queue order: the entry `BZPOPMIN` took first, then the batch. They are acknowledged by the next step.
    mutating func took(_ popped: [[UInt8]]) -> [[UInt8]] {
        var bodies: [[UInt8]] = []
        if let waiting { bodies.append(waiting.body) }
        bodies.append(contentsOf: popped)
        waiting = nil
        unacknowledged = bodies
        // An empty queue is what makes it block; a wake-up's batch that found no more blocks again too.
        drained = popped.isEmpty
        losses = 0
        refusals = 0
        return bodies
    }

    /// `BZPOPMIN` answered with an entry, or with none after its timeout. Either way the next step is a
    /// batch script: it records the entry in flight, and after a timeout it looks for a missed record
    /// (kept only while the queue has entries, which a blocked loop would take at once).
    mutating func waited(_ entry: Entry?) {
        waiting = entry
        drained = false
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

    /// A step failed. What was delivered stays unacknowledged and what `BZPOPMIN` took stays waiting: the
    /// steps that follow remove and record them, which is the same when done twice.
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
