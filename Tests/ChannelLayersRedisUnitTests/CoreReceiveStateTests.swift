import HiredisClient
import Testing

@testable import ChannelLayersRedis

/// The core layer's receive loop bookkeeping alone.
struct CoreReceiveStateTests {
    @Test func theFirstPopRestoresWhatAPreviousRunLeftAndEachBatchIsAcknowledgedByTheNext() {
        var state = CoreReceiveState()
        #expect(state.needsRestore)
        let rewrite = state.restoredInFlight()
        #expect(!rewrite, "a first start writes memberships as they come, not all over again")
        #expect(!state.needsRestore && state.unacknowledged.isEmpty)
        state.popped([[1], [2]])
        #expect(state.unacknowledged == [[1], [2]])
        state.popped([])
        #expect(state.unacknowledged.isEmpty, "a pop that timed out acknowledged the batch before it")
    }

    @Test func aLostConnectionRestoresAgainAndRewritesMembershipsOnce() {
        var state = CoreReceiveState()
        _ = state.restoredInFlight()
        state.popped([[7]])
        let first = state.failed(RedisError(.connectionClosed, "gone"))
        let second = state.failed(RedisError(.connectionRefused, "refused"))
        #expect(first == .lost(attempt: 1, first: true) && second == .lost(attempt: 2, first: false))
        #expect(state.needsRestore)
        #expect(state.unacknowledged == [[7]], "acknowledged by the first pop after the connection is back")
        let rewrite = state.restoredInFlight()
        let again = state.restoredInFlight()
        #expect(rewrite && !again)
        state.popped([])
        #expect(state.failed(RedisError(.connectionClosed, "gone")) == .lost(attempt: 1, first: true), "a successful pop ends the streak")
    }

    @Test func anErrorReplyIsRetriedSlowerWithoutTouchingMemberships() {
        var state = CoreReceiveState()
        _ = state.restoredInFlight()
        let refusals = (0..<3).map { _ in state.failed(RedisError(.errorReply, "WRONGTYPE", serverMessage: "WRONGTYPE Operation against a key")) }
        #expect(refusals == [.refused(attempt: 1), .refused(attempt: 2), .refused(attempt: 3)])
        #expect(!state.needsRestore, "the connection is fine: nothing to restore, no memberships to rewrite")
        state.popped([])
        #expect(state.failed(RedisError(.errorReply, "WRONGTYPE")) == .refused(attempt: 1))
    }

    @Test func whatRetryingCannotFixStopsTheLayer() {
        var state = CoreReceiveState()
        #expect(state.failed(RedisError(.authenticationFailed, "WRONGPASS")) == .fatal)
        #expect(state.failed(RedisError(.errorReply, "NOPERM", serverMessage: "NOPERM this user has no permissions to run the 'bzpopmin' command")) == .fatal)
    }
}
