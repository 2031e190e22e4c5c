import ChannelLayers
import ChannelsProtocol
import Testing

@testable import ChannelsNode

@Suite struct PublishPressureStateTests {
    @Test func aGroupLagsFromItsFirstMemberBehindUntilItsLast() {
        var state = PublishPressureState()
        let now = ContinuousClock.now
        state.fellBehind(["a", "b"])
        state.fellBehind(["a"])
        #expect(state.behind == ["a": 2, "b": 1])
        let lag1 = state.isLagging("a", now: now)
        let lag2 = state.isLagging("b", now: now)
        let lag3 = state.isLagging("c", now: now)
        #expect(lag1 && lag2 && !lag3)
        let first = state.takeAnnouncement()
        #expect(first.lagging == ["a", "b"] && first.caughtUp.isEmpty)
        #expect(state.takeAnnouncement().lagging.isEmpty, "said once")
        state.caughtUp(["a"])
        let lag4 = state.isLagging("a", now: now)
        #expect(lag4)
        state.caughtUp(["a", "b"])
        let lag5 = state.isLagging("a", now: now)
        let lag6 = state.isLagging("b", now: now)
        #expect(!lag5 && !lag6)
        #expect(state.activeEntries == 0)
        let second = state.takeAnnouncement()
        #expect(second.lagging.isEmpty && second.caughtUp == ["a", "b"])
        // Catching up in a group that never lagged changes nothing.
        state.caughtUp(["z"])
        #expect(state.behind.isEmpty && state.takeAnnouncement().caughtUp.isEmpty)
    }

    @Test func lagAndBackWithinOneAnnouncementIsNotSaid() {
        var state = PublishPressureState()
        state.fellBehind(["a"])
        state.caughtUp(["a"])
        let announcement = state.takeAnnouncement()
        #expect(announcement.lagging.isEmpty && announcement.caughtUp.isEmpty)
        // Lagging, said, then back and lagging again before the next: the others still hold it lagging.
        state.fellBehind(["a"])
        #expect(state.takeAnnouncement().lagging == ["a"])
        state.caughtUp(["a"])
        state.fellBehind(["a"])
        let again = state.takeAnnouncement()
        #expect(again.lagging.isEmpty && again.caughtUp.isEmpty)
    }

    @Test func anotherNodesLagLastsItsTimeToLiveOrUntilItCaughtUp() {
        var state = PublishPressureState()
        let now = ContinuousClock.now
        state.heard(from: "n2", lagging: ["g"], caughtUp: [], until: now + .milliseconds(100))
        state.heard(from: "n3", lagging: ["g"], caughtUp: [], until: now + .milliseconds(300))
        #expect(state.activeEntries == 2)
        let lag7 = state.isLagging("g", now: now)
        #expect(lag7)
        let lag8 = state.isLagging("g", now: now + .milliseconds(200))
        #expect(lag8, "n3 still lags")
        #expect(state.activeEntries == 1, "n2's entry is past its time")
        state.heard(from: "n3", lagging: [], caughtUp: ["g"], until: now)
        let lag9 = state.isLagging("g", now: now)
        #expect(!lag9)
        #expect(state.activeEntries == 0)
        // A repeat extends the entry, and counts once.
        state.heard(from: "n2", lagging: ["h"], caughtUp: [], until: now + .milliseconds(100))
        state.heard(from: "n2", lagging: ["h"], caughtUp: [], until: now + .milliseconds(400))
        let lag10 = state.isLagging("h", now: now + .milliseconds(300))
        #expect(state.activeEntries == 1 && lag10)
        // Entries nobody asks about are forgotten by the periodic expiry.
        state.heard(from: "n4", lagging: ["x", "y"], caughtUp: [], until: now + .milliseconds(10))
        state.expire(now: now + .seconds(1))
        #expect(state.activeEntries == 0)
    }

    @Test func theLagMessageRoundTripsAndBoundsItsTimeToLive() {
        let lag = NodeControl.Lag(node: "n1", lagging: ["a"], caughtUp: ["b"], timeToLiveMilliseconds: 500)
        #expect(NodeControl.Lag(lag.message) == lag)
        var message = lag.message
        message["ttl_ms"] = .int(86_400_000)
        #expect(NodeControl.Lag(message)?.timeToLiveMilliseconds == 10_000)
        message["ttl_ms"] = nil
        #expect(NodeControl.Lag(message) == nil, "a lag without its time to live is not one")
        #expect(NodeControl.Lag(NodeControl.report(replyTo: "x")) == nil)
    }
}
