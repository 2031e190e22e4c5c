import ChannelLayers
import ChannelsProtocol

/// What a connection that recovers a history group (`?recover=1`) knows of it, and what it does with each
/// of the group's messages, whether read from the history or arriving live: every message once, in offset
/// order, and the client told when its history restarted under it. No I/O: the connection reads the pages
/// and writes the frames.
///
/// The replay reads the history a page at a time behind the client's outbound buffer. Meanwhile live
/// messages of the same epoch are left to the pages (the history holds them; the newest is remembered so
/// the replay reads until it has it), and the others (no position, another epoch) wait until the replay
/// ends. Once replayed, live messages are delivered when their offset is past the last one delivered; a
/// message of another epoch means the group's history was lost and started again (Redis restarted without
/// persistence, its keys expired or were deleted): the client is told, then gets it.
struct RecoveryState: Sendable {
    /// What to do with a live message of the group.
    enum Live: Equatable {
        case deliver
        /// A copy of what was delivered already, or left to a later page: drop it.
        case skip
        /// Keep it until the replay ends, then ask again.
        case hold
        /// The group's history restarted: send a recovery frame with ``RecoveryState/restartNotice(before:)`` first, then deliver it.
        case restarted
    }

    /// What a page read gives.
    struct Page {
        /// Before the messages: a recovery frame telling the client its history restarted or has a gap.
        var notice: (epoch: String, offset: Int64)?
        /// The page's messages the client has not had, in order.
        var messages: [(offset: Int64, message: Message)] = []
        /// Whether another page must be read.
        var more = false
        /// Wait this long before reading it: the last page brought nothing although a newer message was seen live.
        var pause: Duration?
    }

    let group: String
    private(set) var epoch: String
    /// The newest offset the client has been given (or told of).
    private(set) var delivered: Int64
    /// Whether history pages are still being read.
    private(set) var replaying: Bool
    /// The newest offset of the epoch seen live while replaying.
    private(set) var newestLive: Int64 = 0
    /// How many messages the next page reads: sized from the last page so that a page holds about
    /// ``pageBytes``, between 1 and ``maxPageMessages``.
    private(set) var pageLimit = Self.firstPageMessages

    /// Reads in a row that found nothing although a newer message of the epoch was seen live (it is on its
    /// way into the history, or a publisher other than the script claimed that offset).
    private var emptyReads = 0
    /// Past this many, the replay ends: live delivery takes over, and the client is told of the gap.
    static let maxEmptyReads = 20

    /// The first read of a recovery: most clients missed a few messages, and large ones cost one page.
    static let firstPageMessages = 16
    static let maxPageMessages = 100
    /// About what one page holds: the bound on what a client that does not read makes the node hold.
    static let pageBytes = 256 * 1024

    init(group: String, epoch: String, delivered: Int64, replaying: Bool) {
        self.group = group
        self.epoch = epoch
        self.delivered = delivered
        self.replaying = replaying
    }

    mutating func live(_ position: HistoryPosition?) -> Live {
        guard let position else { return replaying ? .hold : .deliver }
        if replaying {
            guard position.epoch == epoch else { return .hold }
            newestLive = max(newestLive, position.offset)
            return .skip
        }
        guard position.epoch == epoch else {
            epoch = position.epoch
            delivered = position.offset
            return .restarted
        }
        guard position.offset > delivered else { return .skip }
        delivered = position.offset
        return .deliver
    }

    /// The frame that tells the client its history restarted before a message at `offset`:
    /// `{"type": "recovery", "recovered": false, "epoch": <new>, "offset": offset - 1}`.
    func restartNotice(before offset: Int64) -> (epoch: String, offset: Int64) {
        (epoch, max(0, offset - 1))
    }

    /// Takes a page read after ``delivered`` with `limit`: what to send, and whether to read on.
    mutating func page(_ history: GroupHistory, limit: Int) -> Page {
        var page = Page()
        guard replaying else { return page }
        if !history.messages.isEmpty, history.bytes > 0 {
            let average = max(1, history.bytes / history.messages.count)
            pageLimit = min(Self.maxPageMessages, max(1, Self.pageBytes / average))
        }
        if history.top.epoch != epoch {
            // The history restarted while the client was catching up: say so, and replay the new one.
            // This page was read after the old epoch's offset: read the new history from its start.
            epoch = history.top.epoch
            delivered = 0
            newestLive = 0
            page.notice = (epoch, 0)
            page.more = true
            return page
        }
        let fresh = history.messages.filter { $0.offset > delivered }
        if let first = fresh.first, first.offset > delivered + 1 {
            // Trimmed before the client got there (a slow replay of a busy group): a gap it must know of.
            page.notice = (epoch, first.offset - 1)
        } else if fresh.isEmpty, history.top.offset > delivered {
            // What the client lacks is no longer kept (the stream expired): a gap up to the top.
            page.notice = (epoch, history.top.offset)
            delivered = history.top.offset
        }
        page.messages = fresh
        if let last = fresh.last { delivered = last.offset }
        // A short page reached the top as it was when read; a live message seen since may be newer.
        if history.messages.count < limit, newestLive <= delivered {
            replaying = false
        } else if fresh.isEmpty {
            emptyReads += 1
            if emptyReads > Self.maxEmptyReads {
                page.notice = (epoch, newestLive)
                delivered = newestLive
                replaying = false
            } else {
                page.pause = .milliseconds(20)
            }
        } else {
            emptyReads = 0
        }
        page.more = replaying
        return page
    }

    /// Ends the replay early (a page could not be read): live delivery takes over from here.
    mutating func abandonReplay() -> (epoch: String, offset: Int64) {
        replaying = false
        delivered = max(delivered, newestLive)
        return (epoch, delivered)
    }
}
