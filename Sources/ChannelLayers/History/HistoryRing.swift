import ChannelsProtocol
import DequeModule

/// One group's history in a process: the newest messages with their offsets, trimmed by count, bytes and age.
struct HistoryRing {
    private var entries: Deque<(offset: Int64, message: Message, bytes: Int, at: ContinuousClock.Instant)> = []
    private(set) var top: Int64 = 0
    private(set) var lastWrite: ContinuousClock.Instant
    /// The bytes of the messages kept (their msgpack size, as the Redis layer counts them).
    private(set) var bytes = 0

    init(now: ContinuousClock.Instant) {
        self.lastWrite = now
    }

    /// Appends a message and returns its offset. The newest message is always kept.
    mutating func append(_ message: Message, size: Int, maxBytes: Int, now: ContinuousClock.Instant) -> Int64 {
        top += 1
        let length = MessagePack.encode(message).count
        entries.append((top, message, length, now))
        bytes += length
        while entries.count > 1, entries.count > size || bytes > maxBytes {
            bytes -= entries.removeFirst().bytes
        }
        lastWrite = now
        return top
    }

    /// Drops what is older than `ttl`.
    mutating func expire(ttl: Duration, now: ContinuousClock.Instant) {
        while let first = entries.first, now - first.at > ttl {
            bytes -= entries.removeFirst().bytes
        }
    }

    /// At most `limit` messages: the first after `offset`, or the newest when `offset` is `nil`.
    func messages(after offset: Int64?, limit: Int) -> (messages: [(offset: Int64, message: Message)], bytes: Int) {
        guard limit > 0, let oldest = entries.first?.offset else { return ([], 0) }
        let range: Range<Int>
        if let offset {
            // Offsets are consecutive: the index of `offset + 1` is computed, not searched.
            let start = offset < oldest ? 0 : Int(clamping: min(offset - oldest + 1, Int64(entries.count)))
            range = start..<min(entries.count, start + limit)
        } else {
            range = max(0, entries.count - limit)..<entries.count
        }
        return (range.map { (entries[$0].offset, entries[$0].message) }, range.reduce(0) { $0 + entries[$1].bytes })
    }

    var oldest: Int64? { entries.first?.offset }
}
