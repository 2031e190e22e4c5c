import ChannelLayers
import ChannelsProtocol

/// The keys, host choice and scripts of channels_redis' core `RedisChannelLayer` (4.x).
///
/// - A channel's queue is the sorted set `prefix + non-local name` (`asgispecific.<client>!` for every
///   channel of one process), member = message body, score = send time; `<queue>$inflight` backs up what
///   a receiver popped and has not handled yet.
/// - A group is the sorted set `prefix:group:<group>` of full channel names scored by the time they joined.
/// - Hosts are chosen with ``ShardRing`` on the group name, or on the non-local name of a process channel.
package enum CoreWire {
    /// The key naming the local channels a message is for: a string for `send`, a list for `groupSend`.
    package static let channelField = "__asgi_channel__"

    /// Everything up to and including the first `!` (the whole name when it has none).
    package static func nonLocalName(_ channel: String) -> Substring {
        guard let bang = channel.firstIndex(of: "!") else { return channel[...] }
        return channel[...bang]
    }

    package static func queueKey(prefix: String, channel: String) -> String {
        prefix + nonLocalName(channel)
    }

    package static func inflightKey(queue: String) -> String { queue + "$inflight" }

    package static func groupKey(prefix: String, group: String) -> String { "\(prefix):group:\(group)" }

    /// Moves what a receiver popped but never handled back into its queue, with the original scores.
    /// Keys: the queue, its in-flight set.
    package static let restoreInflightScript = """
        local items = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
        for i = 1, #items, 2 do
            redis.call('ZADD', KEYS[1], items[i + 1], items[i])
        end
        redis.call('DEL', KEYS[2])
        return #items / 2
        """

    /// After a `BZPOPMIN` gave one message: records it in flight, then pops up to ARGV[1] more and records
    /// them too, returning those (member, score pairs). Keys: the queue, its in-flight set; ARGV: batch size,
    /// the first message, its score.
    package static let takeBatchScript = """
        redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
        local items = redis.call('ZPOPMIN', KEYS[1], tonumber(ARGV[1]))
        for i = 1, #items, 2 do
            redis.call('ZADD', KEYS[2], items[i + 1], items[i])
        end
        return items
        """

    /// `send`: drops what is older than the expiry, refuses when the queue holds its capacity (returns 0),
    /// else adds the message and renews the queue's expiry (returns 1). Keys: the queue; ARGV: now (seconds,
    /// float), expiry (s), capacity, body.
    package static let sendScript = """
        redis.call('ZREMRANGEBYSCORE', KEYS[1], 0, math.floor(tonumber(ARGV[1])) - tonumber(ARGV[2]))
        if redis.call('ZCOUNT', KEYS[1], '-inf', '+inf') >= tonumber(ARGV[3]) then
            return 0
        end
        redis.call('ZADD', KEYS[1], ARGV[1], ARGV[4])
        redis.call('EXPIRE', KEYS[1], ARGV[2])
        return 1
        """

    /// `group_send` on one host: for each queue key, its bucket's body unless the queue holds its capacity.
    /// Keys: the queues; ARGV: one body per key, one capacity per key, now, expiry. Returns how many queues
    /// were full.
    package static let groupSendScript = """
        local full = 0
        local now = ARGV[#ARGV - 1]
        local expiry = ARGV[#ARGV]
        for i = 1, #KEYS do
            if redis.call('ZCOUNT', KEYS[i], '-inf', '+inf') < tonumber(ARGV[#KEYS + i]) then
                redis.call('ZADD', KEYS[i], now, ARGV[i])
                redis.call('EXPIRE', KEYS[i], expiry)
            else
                full = full + 1
            end
        end
        return full
        """
}

/// How many messages a channel's queue may hold: the first `channel_capacity` pattern its name matches,
/// else the layer's capacity.
public struct ChannelCapacities: Sendable, Hashable {
    /// The capacity of channels no pattern matches (channels_redis' `capacity`, 100).
    public var defaultCapacity: Int
    /// Glob patterns (`*`, `?`) and their capacities, tried in order (channels_redis' `channel_capacity`).
    public var patterns: [Pattern]

    public struct Pattern: Sendable, Hashable {
        public var glob: String
        public var capacity: Int
        public init(glob: String, capacity: Int) {
            self.glob = glob
            self.capacity = capacity
        }
    }

    public init(defaultCapacity: Int = 100, patterns: [Pattern] = []) {
        self.defaultCapacity = defaultCapacity
        self.patterns = patterns
    }

    /// Parses `PATTERN=CAPACITY` (as `--channel-capacity` takes it).
    public static func pattern(parsing text: String) throws(ChannelLayerError) -> Pattern {
        guard let equals = text.lastIndex(of: "="), let capacity = Int(text[text.index(after: equals)...]), capacity > 0,
            equals != text.startIndex
        else {
            throw ChannelLayerError(.invalidName, "channel capacity '\(text)' is not PATTERN=CAPACITY with a positive capacity, like 'http.request=200' or 'specific.*=500'")
        }
        return Pattern(glob: String(text[..<equals]), capacity: capacity)
    }

    public func capacity(of channel: String) -> Int {
        patterns.first { Glob.matches($0.glob, name: channel) }?.capacity ?? defaultCapacity
    }
}
