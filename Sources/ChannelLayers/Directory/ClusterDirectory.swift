import ChannelsProtocol

/// Who is where across the nodes sharing a layer: the groups, their members and the nodes, as operators
/// list them (the HTTP API, the admin page, `channels-ctl`).
///
/// channels_redis cannot list a group's members, so a Redis cluster answers from the membership registry
/// the nodes keep (``coversCluster`` true); a process on the in-memory layer answers from its own state
/// (``coversCluster`` false, and no node list), and says so to whoever reads the listing.
public protocol ClusterDirectory: Sendable {
    /// Whether the listings cover every node sharing the layer (`false`: this process only).
    var coversCluster: Bool { get }

    /// Groups with members, whose names match a glob (`chat_*`; `*` any run, `?` one character), sorted by name.
    func groups(matching pattern: String) async throws(ChannelLayerError) -> [DirectoryGroup]

    /// A group's members, oldest first.
    func members(of group: String) async throws(ChannelLayerError) -> [DirectoryMember]

    /// The nodes that reported recently, alive or stale, sorted by id; empty when the directory has no node list.
    func nodes() async throws(ChannelLayerError) -> [DirectoryNode]

    /// A few facts about the shared backend for dashboards (Redis `redis_version`, `used_memory_human`,
    /// `connected_clients`, ...); empty when there is none.
    func backendInfo() async throws(ChannelLayerError) -> [String: String]
}

/// A group and where its members are.
public struct DirectoryGroup: Sendable, Hashable {
    public var name: String
    public var members: Int
    /// The nodes holding its members (empty for a process-only directory).
    public var nodes: [String]

    public init(name: String, members: Int, nodes: [String]) {
        self.name = name
        self.members = members
        self.nodes = nodes
    }
}

/// One member of a group.
public struct DirectoryMember: Sendable, Hashable {
    public var channel: String
    /// The node holding it, when known.
    public var node: String?
    /// Unix seconds (0 when unknown).
    public var joinedAt: Double
    /// The token's `sub`, when it joined with presence.
    public var user: String?
    /// Its presence `info` claim, when it joined with presence.
    public var info: MessageValue?
    /// Whether it joined with presence.
    public var present: Bool

    public init(channel: String, node: String?, joinedAt: Double, user: String? = nil, info: MessageValue? = nil, present: Bool = false) {
        self.channel = channel
        self.node = node
        self.joinedAt = joinedAt
        self.user = user
        self.info = info
        self.present = present
    }
}

/// A node as the directory knows it.
public struct DirectoryNode: Sendable, Hashable {
    public var id: String
    /// Whether it beat within the registry's TTL.
    public var alive: Bool
    /// Unix seconds of its last heartbeat.
    public var lastHeartbeat: Double
    public var startedAt: Double?
    public var connections: Int?
    public var channels: Int?
    public var groups: Int?
    /// A fingerprint of its authentication settings (`none` without any), when known: nodes of one cluster
    /// must agree.
    public var auth: String?

    public init(
        id: String, alive: Bool, lastHeartbeat: Double, startedAt: Double? = nil, connections: Int? = nil, channels: Int? = nil, groups: Int? = nil,
        auth: String? = nil
    ) {
        self.id = id
        self.alive = alive
        self.lastHeartbeat = lastHeartbeat
        self.startedAt = startedAt
        self.connections = connections
        self.channels = channels
        self.groups = groups
        self.auth = auth
    }
}
