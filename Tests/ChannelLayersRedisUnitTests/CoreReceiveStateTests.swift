import HiredisClient
import Testing

@testable import ChannelLayersRedis

/// The core layer's receive loop bookkeeping alone.
struct CoreReceiveStateTests {
    @Test func theFirstStepRestoresWhatAPreviousRunLeftAndEachBatchIsAcknowledgedByTheNext() {
        var state = CoreReceiveState()
        #expect(state.next(batch: 256) == .restore)
        let rewrite = state.restoredInFlight()
        #expect(!rewrite, "a first start writes memberships as they come, not all over again")
        #expect(state.next(batch: 256) == .takeBatch(limit: 256) && state.unacknowledged.isEmpty)
        #expect(state.took([[1], [2]]) == [[1], [2]])
        #expect(state.unacknowledged == [[1], [2]])
        #expect(state.next(batch: 256) == .takeBatch(limit: 256), "while the queue has entries, every step is one script")
        #expect(state.took([]).isEmpty)
        #expect(state.unacknowledged.isEmpty, "the script that found the queue empty acknowledged the batch before it")
    }

    /// Under load a batch is one script; only an empty queue makes the loop block, and the entry that wakes it
    /// is recorded in flight by the next script and delivered first, in a batch no larger than `batch`.
    @Test func onlyAnEmptyQueueBlocksAndTheEntryThatWakesTheLoopLeadsTheNextBatch() {
        var state = CoreReceiveState()
        _ = state.restoredInFlight()
        _ = state.took([[1]])
        _ = state.took([])
        #expect(state.next(batch: 4) == .wait)
        state.waited(CoreReceiveState.Entry(body: [9], score: "1700000000.5"))
        #expect(state.waiting == CoreReceiveState.Entry(body: [9], score: "1700000000.5"))
        #expect(state.next(batch: 4) == .takeBatch(limit: 3))
        #expect(state.took([[10], [11], [12]]) == [[9], [10], [11], [12]], "queue order: the woken entry was the oldest")
        #expect(state.waiting == nil && state.unacknowledged == [[9], [10], [11], [12]])
        #expect(state.next(batch: 4) == .takeBatch(limit: 4))

        // Woken with one entry and nothing more behind it: delivered, then the loop blocks again.
        _ = state.took([])
        state.waited(CoreReceiveState.Entry(body: [20], score: "1"))
        #expect(state.took([]) == [[20]])
        #expect(state.next(batch: 4) == .wait)
        // A timeout runs one script (acknowledging nothing, looking for a missed record), then blocks again.
        state.waited(nil)
        #expect(state.next(batch: 4) == .takeBatch(limit: 4))
        #expect(state.took([]).isEmpty && state.next(batch: 4) == .wait)
        // A batch of one leaves no room beside the woken entry.
        state.waited(CoreReceiveState.Entry(body: [30], score: "2"))
        #expect(state.next(batch: 1) == .takeBatch(limit: 0))
        #expect(state.next(batch: 0) == .takeBatch(limit: 0))
    }

    @Test func aLostConnectionRestoresAgainAndRewritesMembershipsOnce() {
        var state = CoreReceiveState()
        _ = state.restoredInFlight()
        _ = state.took([[7]])
        let first = state.failed(RedisError(.connectionClosed, "gone"))
        let second = state.failed(RedisError(.connectionRefused, "refused"))
        #expect(first == .lost(attempt: 1, first: true) && second == .lost(attempt: 2, first: false))
        #expect(state.next(batch: 8) == .restore)
        #expect(state.unacknowledged == [[7]], "acknowledged with the restore, so that it is not re-queued")
        let rewrite = state.restoredInFlight()
        let again = state.restoredInFlight()
        #expect(rewrite && !again)
        #expect(state.unacknowledged.isEmpty)
        _ = state.took([])
        #expect(state.failed(RedisError(.connectionClosed, "gone")) == .lost(attempt: 1, first: true), "a successful step ends the streak")
    }

    /// An entry `BZPOPMIN` took is in no Redis key until a script records it: a failure must not drop it.
    @Test func anEntryTakenByBZPOPMINSurvivesAFailedStep() {
        var state = CoreReceiveState()
        _ = state.restoredInFlight()
        _ = state.took([])
        state.waited(CoreReceiveState.Entry(body: [5], score: "3"))
        _ = state.failed(RedisError(.connectionClosed, "gone"))
        #expect(state.next(batch: 8) == .restore)
        _ = state.restoredInFlight()
        #expect(state.next(batch: 8) == .takeBatch(limit: 7))
        #expect(state.took([[6]]) == [[5], [6]])
        // After a restore the loop takes a batch before it blocks: the restore may have re-queued entries.
        _ = state.took([])
        _ = state.failed(RedisError(.connectionClosed, "gone"))
        _ = state.restoredInFlight()
        #expect(state.next(batch: 8) == .takeBatch(limit: 8))
    }

    @Test func anErrorReplyIsRetriedSlowerWithoutTouchingMemberships() {
        var state = CoreReceiveState()
        _ = state.restoredInFlight()
        _ = state.took([[3]])
        let refusals = (0..<3).map { _ in state.failed(RedisError(.errorReply, "WRONGTYPE", serverMessage: "WRONGTYPE Operation against a key")) }
        #expect(refusals == [.refused(attempt: 1), .refused(attempt: 2), .refused(attempt: 3)])
        #expect(state.next(batch: 8) == .takeBatch(limit: 8), "the connection is fine: nothing to restore, no memberships to rewrite")
        #expect(state.unacknowledged == [[3]], "acknowledged by the script that succeeds")
        _ = state.took([])
        #expect(state.failed(RedisError(.errorReply, "WRONGTYPE")) == .refused(attempt: 1))
    }

    @Test func whatRetryingCannotFixStopsTheLayer() {
        var state = CoreReceiveState()
        #expect(state.failed(RedisError(.authenticationFailed, "WRONGPASS")) == .fatal)
        #expect(state.failed(RedisError(.errorReply, "NOPERM", serverMessage: "NOPERM this user has no permissions to run the 'bzpopmin' command")) == .fatal)
    }

    /// The batch script's reply: popped (member, score) pairs, then the missed record's (group, count) pairs.
    @Test func theBatchScriptsReplyGivesBodiesInOrderAndTheMissedGroups() throws {
        let reply = RedisReply.array([
            .array([.bulkString([1]), .bulkString(Array("1.5".utf8)), .bulkString([2]), .bulkString(Array("1.6".utf8))]),
            .array([.bulkString(Array("chat_a".utf8)), .bulkString(Array("3".utf8)), .bulkString(Array("chat_b".utf8)), .bulkString(Array("1".utf8))]),
        ])
        let taken = try #require(CoreWire.takenBatch(reply))
        #expect(taken.bodies == [[1], [2]])
        #expect(taken.missed.map(\.group) == ["chat_a", "chat_b"] && taken.missed.map(\.count) == [3, 1])
        let empty = try #require(CoreWire.takenBatch(.array([.array([]), .array([])])))
        #expect(empty.bodies.isEmpty && empty.missed.isEmpty)
        #expect(CoreWire.takenBatch(.integer(1)) == nil)
        #expect(CoreWire.takenBatch(.array([.array([])])) == nil)
        #expect(CoreWire.missedKey(queue: "asgispecific.abc!") == "asgispecific.abc!$missed")
    }

    /// Process queues hold 10,000 unless a `channel_capacity` pattern names them; other channels keep Django's.
    @Test func processQueuesHoldMoreUnlessAPatternSaysOtherwise() {
        let builtIn = ChannelCapacities()
        #expect(builtIn.capacity(of: "specific.abc!def") == 10_000)
        #expect(builtIn.capacity(of: "http.request") == 100)
        #expect(builtIn.capacity(of: "specifically") == 100)
        let overridden = ChannelCapacities(patterns: [.init(glob: "specific.*", capacity: 500)])
        #expect(overridden.capacity(of: "specific.abc!def") == 500)
        let everything = ChannelCapacities(patterns: [.init(glob: "*", capacity: 50)])
        #expect(everything.capacity(of: "specific.abc!def") == 50, "a pattern that matches comes first, as in Django")
        #expect(ChannelCapacities(defaultCapacity: 20_000).capacity(of: "specific.abc!def") == 20_000, "never below the default")
        #expect(ChannelCapacities(defaultCapacity: 7, processQueueCapacity: nil).capacity(of: "specific.abc!def") == 7, "Django's rule")
    }
}
