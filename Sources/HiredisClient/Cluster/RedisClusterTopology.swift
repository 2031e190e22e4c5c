/// Which primary serves which slots, as `CLUSTER SLOTS` reports it.
public struct RedisClusterTopology: Sendable, Hashable {
    /// A primary's address (as the cluster announces it).
    public struct Node: Sendable, Hashable, CustomStringConvertible {
        public let host: String
        public let port: Int
        public init(host: String, port: Int) {
            self.host = host
            self.port = port
        }
        public var description: String { "\(host):\(port)" }
    }

    /// The primary of each slot (`nil` where no node serves it, during a failover).
    private var owners: [Node?]

    /// The distinct primaries, sorted.
    public let primaries: [Node]

    /// A topology from a `CLUSTER SLOTS` reply: `[[start, end, [host, port, id, ...], replicas...], ...]`.
    public init(slotsReply reply: RedisReply) throws(RedisError) {
        guard let ranges = reply.array else { throw RedisError(.protocolError, "CLUSTER SLOTS did not answer an array: \(reply)") }
        var owners = [Node?](repeating: nil, count: RedisClusterSlot.count)
        var primaries: Set<Node> = []
        for range in ranges {
            guard let parts = range.array, parts.count >= 3, let start = parts[0].integer, let end = parts[1].integer,
                let primary = parts[2].array, primary.count >= 2, let host = primary[0].string, let port = primary[1].integer,
                (0..<Int64(RedisClusterSlot.count)).contains(start), (start..<Int64(RedisClusterSlot.count)).contains(end)
            else {
                throw RedisError(.protocolError, "unexpected CLUSTER SLOTS entry: \(range)")
            }
            let node = Node(host: host, port: Int(port))
            primaries.insert(node)
            for slot in Int(start)...Int(end) { owners[slot] = node }
        }
        self.owners = owners
        self.primaries = primaries.sorted { ($0.host, $0.port) < ($1.host, $1.port) }
    }

    /// The primary serving `slot`, if any.
    public func primary(forSlot slot: Int) -> Node? { owners[slot] }

    /// The primary serving `key` (or shard channel), if any.
    public func primary(for key: String) -> Node? { owners[RedisClusterSlot.of(key)] }

    /// Whether every slot has a primary.
    public var isComplete: Bool { owners.allSatisfy { $0 != nil } }
}
