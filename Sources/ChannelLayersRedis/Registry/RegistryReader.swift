import ChannelLayers
import ChannelsProtocol
import HiredisClient
import OrderedCollections

/// The names of the membership registry's keys (see ``RedisPubSubChannelLayer`` and the README).
public struct RegistryKeys: Sendable, Hashable {
    public let prefix: String

    public init(prefix: String = "asgi") {
        self.prefix = prefix
    }

    /// Sorted set: node id -> last heartbeat.
    public var nodes: String { "\(prefix):registry:nodes" }
    /// Hash describing one node; expires with its heartbeat.
    public func node(_ id: String) -> String { "\(prefix):registry:node:\(id)" }
    /// Hash of one node's members of one group: channel -> join time.
    public func group(_ group: String, node: String) -> String { "\(prefix):registry:group:\(group):\(node)" }
    /// A SCAN pattern for the group keys of groups matching a glob pattern.
    public func groupPattern(_ groupGlob: String) -> String { "\(prefix):registry:group:\(groupGlob):*" }

    /// The group and node of a group key, or `nil` for another key.
    public func parseGroupKey(_ key: String) -> (group: String, node: String)? {
        let head = "\(prefix):registry:group:"
        guard key.hasPrefix(head), let colon = key.lastIndex(of: ":") else { return nil }
        let group = key[key.index(key.startIndex, offsetBy: head.count)..<colon]
        let node = key[key.index(after: colon)...]
        guard !group.isEmpty, !node.isEmpty else { return nil }
        return (String(group), String(node))
    }
}

/// Reads the membership registry: what `channels-ctl` shows operators.
public struct RegistryReader: Sendable {
    /// A group and where its members are: the directory's own type, so the API and `channels-ctl` list the same thing.
    public typealias Group = DirectoryGroup
    /// One member of a group (its node is always known in the registry).
    public typealias Member = DirectoryMember
    /// A node that wrote a heartbeat in the last hour (``DirectoryNode/auth`` set).
    public typealias Node = DirectoryNode

    public let keys: RegistryKeys
    private let connection: any RedisCommandSender

    public init(connection: any RedisCommandSender, prefix: String = "asgi") {
        self.connection = connection
        self.keys = RegistryKeys(prefix: prefix)
    }

    /// Groups with members on live nodes, matching a glob pattern (`chat_*`), sorted by name.
    public func groups(matching pattern: String = "*") async throws(RedisError) -> [Group] {
        var byGroup: [String: (members: Int, nodes: [String])] = [:]
        let found = try await scan(keys.groupPattern(pattern))
        let counts = try await connection.pipeline(found.map { RedisCommand("HLEN", .string($0)) })
        for (key, count) in zip(found, counts) {
            guard let (group, node) = keys.parseGroupKey(key), let members = count.integer, members > 0 else { continue }
            byGroup[group, default: (0, [])].members += Int(members)
            byGroup[group, default: (0, [])].nodes.append(node)
        }
        return byGroup.map { Group(name: $0.key, members: $0.value.members, nodes: $0.value.nodes.sorted()) }.sorted { $0.name < $1.name }
    }

    /// The members of a group on every live node, oldest first.
    public func members(of group: String) async throws(RedisError) -> [Member] {
        var members: [Member] = []
        for key in try await scan(keys.groupPattern(group)) {
            guard let (name, node) = keys.parseGroupKey(key), name == group else { continue }
            let fields = try await connection.send(RedisCommand("HGETALL", .string(key))).array ?? []
            var index = 0
            while index + 1 < fields.count {
                if let channel = fields[index].string {
                    members.append(Self.member(channel: channel, node: node, value: fields[index + 1].string ?? ""))
                }
                index += 2
            }
        }
        return members.sorted { ($0.joinedAt, $0.channel) < ($1.joinedAt, $1.channel) }
    }

    /// A group's presence: this node's members from its own state (the registry's writes lag a little),
    /// the other nodes' from the registry when there is one, oldest first.
    static func presence(of group: String, local: [PresenceMember], node: String, reader: RegistryReader?) async throws(ChannelLayerError) -> [PresenceMember] {
        var members = local
        if let reader {
            let remote: [Member]
            do {
                remote = try await reader.members(of: group)
            } catch {
                throw ChannelLayerError(error, doing: "reading the presence of \(group)")
            }
            members += remote.filter { $0.present && $0.node != node }.map {
                PresenceMember(channel: $0.channel, node: $0.node ?? "", user: $0.user, info: $0.info, joinedAt: $0.joinedAt)
            }
        }
        return members.sorted { ($0.joinedAt, $0.channel) < ($1.joinedAt, $1.channel) }
    }

    /// A registry value: the join time, or for a member with presence `{"at": T, "user": U, "info": I}`.
    static func member(channel: String, node: String, value: String) -> Member {
        if let joinedAt = Double(value) { return Member(channel: channel, node: node, joinedAt: joinedAt) }
        guard case .map(let object)? = try? JSON.parse(value, limits: .init(maxSize: 8192, maxDepth: 8)) else {
            return Member(channel: channel, node: node, joinedAt: 0)
        }
        let info = object["info"].flatMap { $0 == .null ? nil : $0 }
        return Member(
            channel: channel, node: node, joinedAt: object["at"]?.double ?? 0, user: object["user"]?.string, info: info, present: true
        )
    }

    /// The value the registry keeps for a member: its join time, or with presence a small JSON object.
    static func value(joinedAt: Double, presence: PresenceInfo?) -> String {
        guard let presence else { return String(joinedAt) }
        let object: MessageValue = .map(["at": .double(joinedAt), "user": presence.user.map { .string($0) } ?? .null, "info": presence.info ?? .null])
        return (try? JSON.serialize(object)) ?? String(joinedAt)
    }

    /// Every node that beat in the last hour, alive or stale, sorted by id.
    public func nodes() async throws(RedisError) -> [Node] {
        let listing = try await connection.send(RedisCommand("ZRANGE", .string(keys.nodes), 0, -1, "WITHSCORES")).array ?? []
        var ids: [(String, Double)] = []
        var index = 0
        while index + 1 < listing.count {
            if let id = listing[index].string { ids.append((id, Double(listing[index + 1].string ?? "") ?? 0)) }
            index += 2
        }
        let details = try await connection.pipeline(ids.map { RedisCommand("HGETALL", .string(keys.node($0.0))) })
        return zip(ids, details).map { entry, reply in
            var fields: [String: String] = [:]
            let values = reply.array ?? []
            var position = 0
            while position + 1 < values.count {
                if let name = values[position].string { fields[name] = values[position + 1].string }
                position += 2
            }
            return Node(
                id: entry.0, alive: !fields.isEmpty,
                lastHeartbeat: Double(fields["heartbeat_at"] ?? "") ?? entry.1,
                startedAt: fields["started_at"].flatMap(Double.init),
                connections: fields["connections"].flatMap { Int($0) },
                channels: fields["channels"].flatMap { Int($0) },
                groups: fields["groups"].flatMap { Int($0) },
                auth: fields["auth"]
            )
        }.sorted { $0.id < $1.id }
    }

    /// The members Django's core layer lists in a group's sorted set (`{prefix}:group:{group}`, on the host
    /// channels_redis hashes the group to: `connection`), as node `django`, without those in `known` (the
    /// registry named them: Swift nodes write both).
    public static func djangoMembers(
        of group: String, prefix: String, on connection: any RedisCommandSender, except known: Set<String>
    ) async throws(RedisError) -> [Member] {
        let items = try await connection.send(RedisCommand("ZRANGE", .string("\(prefix):group:\(group)"), 0, -1, "WITHSCORES")).array ?? []
        return stride(from: 0, to: items.count - 1, by: 2).compactMap { index in
            guard let channel = items[index].string, !known.contains(channel) else { return nil }
            return Member(channel: channel, node: "django", joinedAt: items[index + 1].string.flatMap(Double.init) ?? 0)
        }
    }

    /// All keys matching a pattern, with SCAN (never KEYS, which blocks Redis), on every primary of a cluster.
    public func scan(_ pattern: String) async throws(RedisError) -> [String] {
        var found: Set<String> = []
        for sender in try await connection.keyspaceSenders() {
            var cursor = "0"
            repeat {
                let reply = try await sender.send(RedisCommand("SCAN", .string(cursor), "MATCH", .string(pattern), "COUNT", 1000))
                guard let parts = reply.array, parts.count == 2, let next = parts[0].string else {
                    throw RedisError(.protocolError, "unexpected SCAN reply: \(reply)")
                }
                cursor = next
                for key in parts[1].array ?? [] { if let key = key.string { found.insert(key) } }
            } while cursor != "0"
        }
        return found.sorted()
    }
}
