import ChannelsProtocol
import DequeModule

/// One group's history in a process: the newest messages with their offsets, trimmed by count and age.
struct HistoryRing {
    private var entries: Deque<(offset: Int64, message: Message, at: ContinuousClock.Instant)> = []
    private(set) var top: Int64 = 0
    private(set) var lastWrite: ContinuousClock.Instant

    init(now: ContinuousClock.Instant) {
        self.lastWrite = now
    }

    /// Appends a message and returns its offset.
    mutating func append(_ message: Message, size: Int, now: ContinuousClock.Instant) -> Int64 {
        top += 1
        entries.append((top, message, now))
        while entries.count > size { entries.removeFirst() }
        lastWrite = now
        return top
    }

    /// Drops what is older than `ttl`.
    mutating func expire(ttl: Duration, now: ContinuousClock.Instant) {
        while let first = entries.first, now - first.at > ttl { entries.removeFirst() }
    }

    func messages(after offset: Int64?) -> [(offset: Int64, message: Message)] {
        entries.filter { $0.offset > (offset ?? 0) }.map { ($0.offset, $0.message) }
    }

    var oldest: Int64? { entries.first?.offset }
}
