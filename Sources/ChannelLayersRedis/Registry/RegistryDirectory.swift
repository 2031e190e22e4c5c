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
            return try await reader.groups(matching: pattern)
        } catch {
            throw ChannelLayerError(error, doing: "listing groups from the registry")
        }
    }

    public func members(of group: String) async throws(ChannelLayerError) -> [DirectoryMember] {
        try LayerValidation.group(group)
        var members: [DirectoryMember]
        do {
            members = try await reader.members(of: group)
        } catch {
            throw ChannelLayerError(error, doing: "listing the members of \(group) from the registry")
        }
        guard includesDjangoMembers, !clients.isEmpty else { return members }
        let client = clients[ShardRing.index(of: group, hostCount: clients.count)]
        do {
            members += try await RegistryReader.djangoMembers(of: group, prefix: prefix, on: client, except: Set(members.map(\.channel)))
        } catch {
            throw ChannelLayerError(error, doing: "listing Django's members of \(group)")
        }
        return members.sorted { ($0.joinedAt, $0.channel) < ($1.joinedAt, $1.channel) }
    }

    public func nodes() async throws(ChannelLayerError) -> [DirectoryNode] {
        do {
            return try await reader.nodes()
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
