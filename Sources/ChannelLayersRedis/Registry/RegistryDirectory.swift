import ChannelLayers
import ChannelsProtocol
import HiredisClient

/// The membership registry as a ``ClusterDirectory``: what a node's HTTP API and admin page list on a
/// Redis layer, for every node on the same Redis.
///
/// On the core layer a group's members also include Django's own (channels_redis' `asgi:group:<group>`
/// sorted set, on the host Django shards the group to), listed on node `django`, as `channels-ctl` does.
public struct RegistryDirectory: ClusterDirectory {
    private let clients: [RedisClient]
    /// The registry's connection: the first host's client, or the cluster's.
    private let registry: any RedisCommandSender
    private let reader: RegistryReader
    private let prefix: String
    private let includesDjangoMembers: Bool

    /// - Parameters:
    ///   - hosts: the layer's Redis hosts in its order (the registry lives on the first), or a cluster's seeds.
    ///   - clustered: whether `hosts` are Redis Cluster seeds (the registry is then spread over its primaries).
    ///   - kind: the layer, which decides whether Django's own group members exist to list.
    public init(hosts: [RedisConfiguration], clustered: Bool = false, prefix: String, kind: RedisLayerSettings.Kind) {
        let clients = clustered ? [] : hosts.map { RedisClient(configuration: $0) }
        self.clients = clients
        let cluster = clustered ? try? RedisClusterClient(seeds: hosts) : nil
        self.registry = cluster ?? clients.first ?? RedisClient(configuration: hosts[0])
        self.reader = RegistryReader(connection: registry, prefix: prefix)
        self.prefix = prefix
        self.includesDjangoMembers = kind == .core
    }

    public var coversCluster: Bool { true }

    public func groups(matching pattern: String) async throws(ChannelLayerError) -> [DirectoryGroup] {
        do {
            return try await reader.groups(matching: pattern).map { DirectoryGroup(name: $0.name, members: $0.members, nodes: $0.nodes) }
        } catch {
            throw ChannelLayerError(error, doing: "listing groups from the registry")
        }
    }

    public func members(of group: String) async throws(ChannelLayerError) -> [DirectoryMember] {
        try LayerValidation.group(group)
        var members: [DirectoryMember]
        do {
            members = try await reader.members(of: group).map {
                DirectoryMember(channel: $0.channel, node: $0.node, joinedAt: $0.joinedAt, user: $0.user, info: $0.info, present: $0.present)
            }
        } catch {
            throw ChannelLayerError(error, doing: "listing the members of \(group) from the registry")
        }
        guard includesDjangoMembers, !clients.isEmpty else { return members }
        let known = Set(members.map(\.channel))
        let client = clients[ShardRing.index(of: group, hostCount: clients.count)]
        let reply: RedisReply
        do {
            reply = try await client.send(RedisCommand("ZRANGE", .string("\(prefix):group:\(group)"), 0, -1, "WITHSCORES"))
        } catch {
            throw ChannelLayerError(error, doing: "listing Django's members of \(group)")
        }
        let items = reply.array ?? []
        for index in stride(from: 0, to: items.count - 1, by: 2) {
            guard let channel = items[index].string, !known.contains(channel) else { continue }
            members.append(DirectoryMember(channel: channel, node: "django", joinedAt: items[index + 1].string.flatMap(Double.init) ?? 0))
        }
        return members.sorted { ($0.joinedAt, $0.channel) < ($1.joinedAt, $1.channel) }
    }

    public func nodes() async throws(ChannelLayerError) -> [DirectoryNode] {
        do {
            return try await reader.nodes().map {
                DirectoryNode(
                    id: $0.id, alive: $0.alive, lastHeartbeat: $0.lastHeartbeat, startedAt: $0.startedAt, connections: $0.connections,
                    channels: $0.channels, groups: $0.groups
                )
            }
        } catch {
            throw ChannelLayerError(error, doing: "listing nodes from the registry")
        }
    }

    /// A few fields of the registry host's `INFO`.
    public func backendInfo() async throws(ChannelLayerError) -> [String: String] {
        let text: String
        do {
            text = try await registry.send(RedisCommand("INFO")).string ?? ""
        } catch {
            throw ChannelLayerError(error, doing: "reading Redis INFO")
        }
        let wanted: Set<String> = [
            "redis_version", "uptime_in_seconds", "connected_clients", "used_memory_human", "pubsub_channels", "role", "instantaneous_ops_per_sec",
        ]
        var info: [String: String] = [:]
        for line in text.split(whereSeparator: \.isNewline) {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let name = String(line[..<colon])
            if wanted.contains(name) { info[name] = String(line[line.index(after: colon)...]) }
        }
        info["hosts"] = clients.isEmpty ? "cluster" : String(clients.count)
        return info
    }
}
