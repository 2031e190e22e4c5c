import ChannelsProtocol

/// Where a message stands in its group's history: offsets count the group's messages from 1 with no gap;
/// the epoch names one continuous history (it changes when the history was lost, say Redis lost its data).
public struct HistoryPosition: Sendable, Hashable {
    public var offset: Int64
    public var epoch: String

    public init(offset: Int64, epoch: String) {
        self.offset = offset
        self.epoch = epoch
    }
}

/// What a history group holds after an offset, read for a client that recovers.
public struct GroupHistory: Sendable {
    /// The group's newest position (offset 0 when nothing was sent yet in this epoch).
    public var top: HistoryPosition
    /// The messages after the asked offset, oldest first, each with its offset.
    public var messages: [(offset: Int64, message: Message)]
    /// The offset of the oldest message still kept, if any.
    public var oldest: Int64?
    /// The size of ``messages`` as stored (their msgpack bytes), so readers can size their next page.
    public var bytes: Int

    public init(top: HistoryPosition, messages: [(offset: Int64, message: Message)], oldest: Int64?, bytes: Int = 0) {
        self.top = top
        self.messages = messages
        self.oldest = oldest
        self.bytes = bytes
    }


    /// Whether a client that last saw `position` can continue without a gap from what this holds.
    public func continues(from position: HistoryPosition) -> Bool {
        guard position.epoch == top.epoch, position.offset <= top.offset else { return false }
        if position.offset == top.offset { return true }
        guard let oldest else { return false }
        return oldest <= position.offset + 1
    }
}

/// Which groups keep a history, how much and for how long.
public struct HistoryConfiguration: Sendable, Hashable {
    /// Glob patterns (`chat_*`, `*`, `news?`) of the groups that keep a history; empty: none does.
    public var patterns: [String]
    /// Messages kept per group.
    public var size: Int
    /// How long a group's history lives after its last message.
    public var ttl: Duration
    /// Bytes of messages (as published) a group keeps at most: the oldest go first, whatever ``size`` says,
    /// so one client sending large messages cannot make a room hold `size` times the message limit.
    public var maxBytes: Int

    public init(patterns: [String] = [], size: Int = 1000, ttl: Duration = .seconds(300), maxBytes: Int = 1024 * 1024) {
        self.patterns = patterns
        self.size = size
        self.ttl = ttl
        self.maxBytes = maxBytes
    }

    /// No group keeps a history.
    public static let none = HistoryConfiguration()

    /// Whether `group` keeps a history.
    public func keepsHistory(_ group: String) -> Bool {
        patterns.contains { Glob.matches($0, name: group) }
    }
}
