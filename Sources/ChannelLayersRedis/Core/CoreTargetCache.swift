import ChannelLayers

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Where the core layer's receiver hands a message, resolved from its `__asgi_channel__` list.
struct CoreTargets {
    /// The inboxes it names, each once, by event loop.
    var pushed: [GroupIndex.LoopMembers] = []
    /// The names it lists that have no inbox here (queues read by `receive()`, or channels gone), each once.
    var queued: [String] = []

    /// Resolves `channels` against this process's inboxes: each channel once, in order, so a body that names
    /// one channel 100,000 times is delivered to it once. Inboxes are told apart by identity, cheaper than
    /// hashing every name again.
    init(channels: [String], inboxes: [String: any ChannelInbox]) {
        var found: [any ChannelInbox] = []
        var seen = Set<ObjectIdentifier>()
        var seenQueued = Set<String>()
        for channel in channels {
            if let inbox = inboxes[channel] {
                if seen.insert(ObjectIdentifier(inbox)).inserted { found.append(inbox) }
            } else if seenQueued.insert(channel).inserted {
                queued.append(channel)
            }
        }
        pushed = found.isEmpty ? [] : GroupIndex.byEventLoop(found)
    }
}

/// The receiver's resolved lists, keyed by the raw msgpack bytes of `__asgi_channel__`.
///
/// A node's queue carries one body per group message, listing the group's members on this node: the same
/// list, byte for byte, for every message to the group until someone joins or leaves. Decoding that list
/// and looking up each name again was 13% of a node's CPU fanning out to 100 members (core S1). Entries
/// hold only while this process's inboxes stay as they were (``LocalMembership/inboxGeneration``). The
/// cache is emptied when they changed, seen at the next message or before the receiver blocks on an empty
/// queue (at most its receive timeout apart), so it keeps a closed connection's inbox no longer than that;
/// and when it is full.
struct CoreTargetCache {
    /// The most lists kept: a node's busiest groups.
    let capacity: Int
    private var generation: UInt64 = 0
    private var entries: [Key: CoreTargets] = [:]

    /// A list's bytes, hashed and compared as one block: `[UInt8]`'s own hashing takes a byte at a time,
    /// which cost more than the decoding it saved.
    private struct Key: Hashable {
        let bytes: [UInt8]

        func hash(into hasher: inout Hasher) {
            bytes.withUnsafeBytes { hasher.combine(bytes: $0) }
        }

        static func == (lhs: Key, rhs: Key) -> Bool {
            lhs.bytes.count == rhs.bytes.count
                && (lhs.bytes.isEmpty
                    || lhs.bytes.withUnsafeBytes { left in rhs.bytes.withUnsafeBytes { right in memcmp(left.baseAddress!, right.baseAddress!, left.count) == 0 } })
        }
    }

    init(capacity: Int = 256) {
        self.capacity = capacity
    }

    var count: Int { entries.count }

    /// The targets resolved for `list` while the inboxes were at `generation`, if any.
    mutating func targets(for list: [UInt8], generation: UInt64) -> CoreTargets? {
        update(to: generation)
        return entries[Key(bytes: list)]
    }

    /// Keeps `targets` for `list`, resolved while the inboxes were at `generation`.
    mutating func store(_ targets: CoreTargets, for list: [UInt8], generation: UInt64) {
        update(to: generation)
        if entries.count >= capacity { entries.removeAll(keepingCapacity: true) }
        entries[Key(bytes: list)] = targets
    }

    /// Drops what was resolved before the inboxes changed to `generation`.
    mutating func update(to generation: UInt64) {
        guard generation != self.generation else { return }
        entries.removeAll(keepingCapacity: true)
        self.generation = generation
    }
}
