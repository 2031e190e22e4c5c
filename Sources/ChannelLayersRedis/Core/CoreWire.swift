import ChannelLayers
import ChannelsProtocol
import Foundation
import HiredisClient

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
        // On the UTF-8 view: a group send splits every member's name, and `Character` iteration cost a fifth of
        // a node's CPU in a room of 100.
        guard let bang = channel.utf8.firstIndex(of: UInt8(ascii: "!")) else { return channel[...] }
        return channel[...bang]
    }

    /// Whether `channel` is a local channel of the process whose non-local name is `nonLocal` (which ends in `!`).
    package static func isLocal(_ channel: String, of nonLocal: String) -> Bool {
        let prefix = nonLocal.utf8
        guard channel.utf8.count > prefix.count, prefix.last == UInt8(ascii: "!") else { return false }
        let contiguous = channel.utf8.withContiguousStorageIfAvailable { channel in
            prefix.withContiguousStorageIfAvailable { prefix in
                memcmp(channel.baseAddress!, prefix.baseAddress!, prefix.count) == 0
            }
        }
        return (contiguous ?? nil) ?? channel.utf8.starts(with: prefix)
    }

    package static func queueKey(prefix: String, channel: String) -> String {
        prefix + nonLocalName(channel)
    }

    package static func inflightKey(queue: String) -> String { queue + "$inflight" }

    package static func groupKey(prefix: String, group: String) -> String { "\(prefix):group:\(group)" }

    /// The scripts run for each message, by their digests.
    package static let send = RedisScript(sendScript)
    package static let groupSend = RedisScript(groupSendScript)
    package static let takeBatch = RedisScript(takeBatchScript)

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

    /// What a sender could not write to a process queue at capacity: a hash of group name to messages
    /// missed, read and deleted by the queue's receiver with its next batch, expiring with the queue.
    /// `$` cannot occur in a channel name, so no queue of Django's is ever named so (as `$inflight`).
    package static func missedKey(queue: String) -> String { queue + "$missed" }

    /// One receive step, one round trip: acknowledges the previous batch (removes it from the in-flight
    /// set), records in flight an entry a `BZPOPMIN` took, pops up to ARGV[1] more (`ZPOPMIN`: oldest
    /// first) and records them in flight with their scores, as channels_redis' receive does, so that
    /// ``restoreInflightScript`` re-queues them after a crash; then takes the missed record.
    ///
    /// Keys: the queue, its in-flight set, its missed record. ARGV: how many to pop; the score and body of
    /// the entry a `BZPOPMIN` took (empty strings when none); the previous batch's bodies. Returns
    /// `{popped (member, score pairs), missed (group, count pairs)}`.
    ///
    /// The entry a `BZPOPMIN` took is also removed from the queue: when the reply of a script that
    /// recorded it was lost with the connection, the restore put it back, and it must not come twice.
    /// `unpack` goes 1,000 arguments at a time, well inside Lua's stack.
    package static let takeBatchScript = """
        for i = 4, #ARGV, 1000 do
            redis.call('ZREM', KEYS[2], unpack(ARGV, i, math.min(i + 999, #ARGV)))
        end
        if ARGV[2] ~= '' then
            redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
            redis.call('ZREM', KEYS[1], ARGV[3])
        end
        local items = {}
        if tonumber(ARGV[1]) > 0 then
            items = redis.call('ZPOPMIN', KEYS[1], tonumber(ARGV[1]))
        end
        for i = 1, #items, 1000 do
            local scored = {}
            for j = i, math.min(i + 999, #items), 2 do
                scored[#scored + 1] = items[j + 1]
                scored[#scored + 1] = items[j]
            end
            redis.call('ZADD', KEYS[2], unpack(scored))
        end
        local missed = redis.call('HGETALL', KEYS[3])
        if #missed > 0 then
            redis.call('DEL', KEYS[3])
        end
        return {items, missed}
        """

    /// What ``takeBatchScript`` answered: the popped bodies, oldest first, and the groups whose messages
    /// senders could not write to the queue, with how many each. `nil` for a reply of another shape.
    package static func takenBatch(_ reply: RedisReply) -> (bodies: [[UInt8]], missed: [(group: String, count: Int)])? {
        guard let parts = reply.array, parts.count == 2, let items = parts[0].array, let record = parts[1].array else { return nil }
        var bodies: [[UInt8]] = []
        bodies.reserveCapacity(items.count / 2)
        for index in stride(from: 0, to: items.count - 1, by: 2) {
            if let body = items[index].bytes { bodies.append(body) }
        }
        var missed: [(group: String, count: Int)] = []
        for index in stride(from: 0, to: record.count - 1, by: 2) {
            guard let group = record[index].string, let count = record[index + 1].integer, count > 0 else { continue }
            missed.append((group, Int(count)))
        }
        return (bodies, missed)
    }

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

    /// `group_send` on one host: channels_redis' script, which writes each queue's body unless the queue
    /// holds its capacity, plus a record of each skipped message in that queue's missed record
    /// (``missedKey(queue:)``: group -> count, expiring with the queue) so that its receiver can tell the
    /// members it affects. Django's script skips silently; a Django sender still does.
    ///
    /// Keys: the queues, then their missed records (as many); ARGV: one body per queue, one capacity per
    /// queue, now, expiry, the group. Returns how many queues were full.
    package static let groupSendScript = """
        local full = 0
        local queues = #KEYS / 2
        local now = ARGV[#ARGV - 2]
        local expiry = ARGV[#ARGV - 1]
        local group = ARGV[#ARGV]
        for i = 1, queues do
            if redis.call('ZCOUNT', KEYS[i], '-inf', '+inf') < tonumber(ARGV[queues + i]) then
                redis.call('ZADD', KEYS[i], now, ARGV[i])
                redis.call('EXPIRE', KEYS[i], expiry)
            else
                redis.call('HINCRBY', KEYS[queues + i], group, 1)
                redis.call('EXPIRE', KEYS[queues + i], expiry)
                full = full + 1
            end
        end
        return full
        """
}

/// How many messages a channel's queue may hold: the first `channel_capacity` pattern its name matches,
/// else, for a process queue (`specific.*`), ``processQueueCapacity``, else the layer's capacity.
///
/// One entry in a process queue serves every member of that process, and every group message for any of
/// them, so Django's `capacity` of 100, meant for one channel, drops group messages for a busy node
/// (4.3% of them, silently, in the S2 benchmark). Swift senders therefore give process queues
/// ``defaultProcessQueueCapacity`` unless a pattern says otherwise; Django senders need
/// `"channel_capacity": {"specific.*": 10000}` for the same.
public struct ChannelCapacities: Sendable, Hashable {
    /// The capacity of channels no pattern matches (channels_redis' `capacity`, 100).
    public var defaultCapacity: Int
    /// Glob patterns (`*`, `?`) and their capacities, tried in order (channels_redis' `channel_capacity`).
    public var patterns: [Pattern]
    /// The capacity of process queues (names matching `specific.*`) that no pattern matches, as if it were
    /// the last pattern; never below ``defaultCapacity``. `nil`: ``defaultCapacity``, as in Django.
    public var processQueueCapacity: Int?

    /// What a process queue holds unless told otherwise: 10,000 entries, about 40 of the core layer's
    /// receive batches (256), a few MB of Redis for chat-sized messages, and still bounded by `expiry`.
    public static let defaultProcessQueueCapacity = 10_000

    /// The glob ``processQueueCapacity`` applies to: every channel Django's `new_channel()` makes.
    public static let processQueueGlob = "specific.*"

    public struct Pattern: Sendable, Hashable {
        public var glob: String
        public var capacity: Int
        public init(glob: String, capacity: Int) {
            self.glob = glob
            self.capacity = capacity
        }
    }

    public init(defaultCapacity: Int = 100, patterns: [Pattern] = [], processQueueCapacity: Int? = Self.defaultProcessQueueCapacity) {
        self.defaultCapacity = defaultCapacity
        self.patterns = patterns
        self.processQueueCapacity = processQueueCapacity
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
        if let pattern = patterns.first(where: { Glob.matches($0.glob, name: channel) }) { return pattern.capacity }
        if let processQueueCapacity, Glob.matches(Self.processQueueGlob, name: channel) { return max(processQueueCapacity, defaultCapacity) }
        return defaultCapacity
    }
}
