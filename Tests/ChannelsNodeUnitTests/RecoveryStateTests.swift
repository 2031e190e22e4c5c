import ChannelLayers
import ChannelsProtocol
import Testing

@testable import ChannelsNode

/// The recovery state machine alone: which messages of a recovered group a client gets, from history pages
/// and live, and when it is told its history restarted or has a gap.
struct RecoveryStateTests {
    static func history(_ offsets: ClosedRange<Int64>?, top: Int64, epoch: String = "E", oldest: Int64? = nil) -> GroupHistory {
        let messages = (offsets.map(Array.init) ?? []).map { (offset: $0, message: ["type": "chat.message", "n": .int($0)] as Message) }
        return GroupHistory(top: HistoryPosition(offset: top, epoch: epoch), messages: messages, oldest: oldest ?? offsets?.lowerBound)
    }

    static func at(_ offset: Int64, _ epoch: String = "E") -> HistoryPosition { HistoryPosition(offset: offset, epoch: epoch) }

    @Test func liveMessagesAfterTheLastDeliveredOnlyOnce() {
        var state = RecoveryState(group: "g", epoch: "E", delivered: 5, replaying: false)
        #expect(state.live(Self.at(5)) == .skip)
        #expect(state.live(Self.at(6)) == .deliver)
        #expect(state.live(Self.at(6)) == .skip)
        #expect(state.live(Self.at(3)) == .skip)
        #expect(state.live(Self.at(8)) == .deliver, "a gap live is the layer's to report (messages_lost), not a reason to drop")
        #expect(state.delivered == 8)
        #expect(state.live(nil) == .deliver, "messages outside the history always pass")
    }

    @Test func anotherEpochLiveIsARestartThenEveryMessageOfIt() {
        var state = RecoveryState(group: "g", epoch: "E", delivered: 57, replaying: false)
        #expect(state.live(Self.at(1, "F")) == .restarted)
        let notice = state.restartNotice(before: 1)
        #expect(notice.epoch == "F" && notice.offset == 0)
        #expect(state.epoch == "F" && state.delivered == 1)
        for offset in Int64(2)...10 { #expect(state.live(Self.at(offset, "F")) == .deliver) }
        #expect(state.live(Self.at(58, "E")) == .restarted, "back to an old epoch is a restart too, never a silent drop")
    }

    @Test func replayLeavesLiveMessagesOfItsEpochToThePagesAndHoldsTheRest() {
        var state = RecoveryState(group: "g", epoch: "E", delivered: 10, replaying: true)
        #expect(state.live(Self.at(120)) == .skip)
        #expect(state.live(nil) == .hold)
        #expect(state.live(Self.at(1, "F")) == .hold)
        // A full page: read on.
        var page = state.page(Self.history(11...110, top: 110), limit: 100)
        #expect(page.notice == nil && page.messages.map(\.offset) == Array(11...110) && page.more)
        // A short page that stops before the newest live message seen: read again.
        page = state.page(Self.history(111...115, top: 115), limit: 100)
        #expect(page.messages.map(\.offset) == Array(111...115) && page.more)
        page = state.page(Self.history(116...120, top: 120), limit: 100)
        #expect(page.messages.map(\.offset) == Array(116...120) && !page.more && !state.replaying)
        #expect(state.live(Self.at(120)) == .skip && state.live(Self.at(121)) == .deliver)
    }

    @Test func aPageOfAnotherEpochRestartsTheReplayFromItsStart() {
        var state = RecoveryState(group: "g", epoch: "E", delivered: 40, replaying: true)
        var page = state.page(Self.history(41...50, top: 50, epoch: "F"), limit: 100)
        #expect(page.notice?.epoch == "F" && page.notice?.offset == 0 && page.messages.isEmpty && page.more)
        #expect(state.delivered == 0 && state.epoch == "F")
        page = state.page(Self.history(1...50, top: 50, epoch: "F"), limit: 100)
        #expect(page.notice == nil && page.messages.map(\.offset) == Array(1...50) && !page.more)
    }

    @Test func pagesThatLostWhatTheClientLacksSayThereIsAGap() {
        var state = RecoveryState(group: "g", epoch: "E", delivered: 10, replaying: true)
        // Trimmed while a slow client caught up: 11...19 are gone.
        var page = state.page(Self.history(20...30, top: 30), limit: 100)
        #expect(page.notice?.offset == 19 && page.messages.first?.offset == 20 && !page.more)
        // Expired altogether: nothing after the client's offset but a higher top.
        state = RecoveryState(group: "g", epoch: "E", delivered: 10, replaying: true)
        page = state.page(Self.history(nil, top: 30), limit: 100)
        #expect(page.notice?.offset == 30 && page.messages.isEmpty && !page.more && state.delivered == 30)
    }

    @Test func anUnreadablePageEndsTheReplayWithoutLosingLiveOrder() {
        var state = RecoveryState(group: "g", epoch: "E", delivered: 10, replaying: true)
        #expect(state.live(Self.at(15)) == .skip)
        let notice = state.abandonReplay()
        #expect(notice.offset == 15 && !state.replaying)
        #expect(state.live(Self.at(16)) == .deliver)
    }

    @Test func pagesAreSizedByBytes() {
        var state = RecoveryState(group: "g", epoch: "E", delivered: 0, replaying: true)
        #expect(state.pageLimit == RecoveryState.firstPageMessages)
        var history = Self.history(1...16, top: 500)
        history.bytes = 16 * 60 * 1024
        _ = state.page(history, limit: 16)
        #expect(state.pageLimit == RecoveryState.pageBytes / (60 * 1024), "60 KiB messages: four to a page")
        history = Self.history(17...20, top: 500)
        history.bytes = 4 * 100
        _ = state.page(history, limit: 4)
        #expect(state.pageLimit == RecoveryState.maxPageMessages, "small messages: a full page")
    }

    @Test func aLiveOffsetTheHistoryNeverReachesEndsTheReplayAfterPausedRereads() {
        var state = RecoveryState(group: "g", epoch: "E", delivered: 10, replaying: true)
        #expect(state.live(Self.at(99)) == .skip, "seen live, left to the pages")
        var page = RecoveryState.Page()
        for _ in 0...RecoveryState.maxEmptyReads {
            page = state.page(Self.history(nil, top: 10), limit: 16)
            if !page.more { break }
            #expect(page.pause != nil, "an empty reread waits a little")
        }
        #expect(!page.more && !state.replaying)
        #expect(page.notice?.offset == 99, "the client is told it may have missed up to the live offset")
        #expect(state.live(Self.at(100)) == .deliver)
    }
}
