import ChannelLayers
import ChannelsProtocol
import Foundation
import HiredisClient
import Logging
import NIOCore
import NIOPosix

/// Which of channels_redis' two layers to speak, and its settings: what `channels-node`, `channels-ctl`
/// and `channels-bench` read from their flags and environment.
public struct RedisLayerSettings: Sendable {
    /// channels_redis' layers.
    public enum Kind: String, Sendable, CaseIterable, CustomStringConvertible {
        /// `channels_redis.pubsub.RedisPubSubChannelLayer`: one PUBLISH per group message.
        case pubsub
        /// `channels_redis.core.RedisChannelLayer`, Django's default: sorted-set queues and groups.
        case core

        public var description: String { rawValue }
    }

    public var kind: Kind
    /// Redis URLs, in the order Django lists its hosts.
    public var urls: [String]
    /// Redis Cluster seed nodes (`HOST:PORT` or `redis://[user:password@]HOST:PORT`); when given, ``urls``
    /// is not used and the pub/sub layer shards its channels over the cluster.
    public var clusterSeeds: [String] = []
    public var prefix = "asgi"
    /// Messages a channel's queue holds (`capacity`).
    public var capacity = 100
    /// `channel_capacity` patterns (core layer), tried before the built-in capacity of process queues
    /// (`specific.*`: ``ChannelCapacities/defaultProcessQueueCapacity``), which a `specific.*` pattern replaces.
    public var channelCapacities: [ChannelCapacities.Pattern] = []
    /// `symmetric_encryption_keys` (both layers; on pub/sub not with history).
    public var encryptionKeys: [String] = []
    /// `expiry`: how long a message waits in a queue.
    public var expiry: Duration = .seconds(60)
    /// `group_expiry` (core layer).
    public var groupExpiry: Duration = .seconds(86_400)
    public var nodeID: String?
    /// Whether to keep the membership registry (and, on the pub/sub layer, the cluster's shared state).
    public var registry = true
    /// How long a node is counted after its last word to Redis (pub/sub layer): the registry's TTL and the
    /// node's lease; it writes every third of it.
    public var nodeLease: Duration = .seconds(30)
    /// Which groups keep a history (pub/sub layer).
    public var history = HistoryConfiguration.none
    public var unlistedGroupPrefixes: [String] = []
    public var authFingerprint = "none"
    /// Connection settings applied to every host after parsing its URL.
    public var adjustHost: @Sendable (inout RedisConfiguration) -> Void = { _ in }

    public init(kind: Kind = .pubsub, urls: [String]) {
        self.kind = kind
        self.urls = urls
    }

    /// Parses a layer name (`pubsub` or `core`).
    public static func kind(named name: String) throws(ChannelLayerError) -> Kind {
        guard let kind = Kind(rawValue: name.lowercased()) else {
            throw ChannelLayerError(.invalidName, "layer '\(name)' is not pubsub (channels_redis.pubsub.RedisPubSubChannelLayer) or core (channels_redis.core.RedisChannelLayer)")
        }
        return kind
    }

    /// Encryption keys from a file: one per line; blank lines and lines starting with `#` are skipped.
    public static func encryptionKeys(fromFile path: String) throws(ChannelLayerError) -> [String] {
        guard let bytes = FileManager.default.contents(atPath: path) else {
            throw ChannelLayerError(.invalidMessage, "cannot read the encryption key file \(path)")
        }
        let keys = String(decoding: bytes, as: UTF8.self).split(whereSeparator: \.isNewline)
            .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty && !$0.hasPrefix("#") }
        guard !keys.isEmpty else { throw ChannelLayerError(.invalidMessage, "the encryption key file \(path) holds no key") }
        return keys
    }

    /// Encryption keys from a comma-separated list (`CHANNELS_SYMMETRIC_ENCRYPTION_KEYS`).
    public static func encryptionKeys(fromList text: String) -> [String] {
        text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    /// The layer these settings describe, and what runs it.
    public func makeLayer(
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "ChannelLayers.redis"),
        connectionCount: @escaping @Sendable () -> Int? = { nil }
    ) throws(ChannelLayerError) -> RunnableRedisLayer {
        var hosts: [RedisConfiguration] = []
        var seeds: [RedisConfiguration] = []
        if !clusterSeeds.isEmpty {
            guard kind == .pubsub else {
                throw ChannelLayerError(
                    .invalidMessage,
                    "the core layer cannot run on Redis Cluster (its scripts touch keys of many slots, as channels_redis#420 says); use --layer pubsub with --redis-cluster"
                )
            }
            do {
                seeds = try RedisClusterClient.seeds(from: clusterSeeds).map { seed in
                    var seed = seed
                    adjustHost(&seed)
                    return seed
                }
            } catch {
                throw ChannelLayerError(error, doing: "reading the Redis Cluster seeds")
            }
        }
        if clusterSeeds.isEmpty {
            hosts = try RedisConfiguration.hosts(urls)
            for index in hosts.indices { adjustHost(&hosts[index]) }
        }
        switch kind {
        case .pubsub:
            var configuration = RedisPubSubChannelLayer.Configuration(hosts: hosts, prefix: prefix, capacity: capacity, expiry: expiry, nodeID: nodeID, registry: registry)
            configuration.unlistedGroupPrefixes = unlistedGroupPrefixes
            configuration.authFingerprint = authFingerprint
            configuration.history = history
            configuration.encryptionKeys = encryptionKeys
            configuration.cluster = seeds
            configuration.registryTTL = nodeLease
            configuration.heartbeatInterval = nodeLease / 3
            configuration.reapInterval = min(.seconds(5), nodeLease / 3)
            let layer = try RedisPubSubChannelLayer(configuration: configuration, eventLoopGroup: eventLoopGroup, logger: logger, connectionCount: connectionCount)
            return RunnableRedisLayer(layer: layer, hosts: seeds.isEmpty ? hosts : seeds, clustered: !seeds.isEmpty, prefix: prefix) { () async throws(ChannelLayerError) in
                try await layer.run()
            }
        case .core:
            var configuration = RedisCoreChannelLayer.Configuration(
                hosts: hosts, prefix: prefix, expiry: expiry, groupExpiry: groupExpiry,
                capacities: ChannelCapacities(defaultCapacity: capacity, patterns: channelCapacities), encryptionKeys: encryptionKeys, nodeID: nodeID
            )
            configuration.registry = registry
            configuration.unlistedGroupPrefixes = unlistedGroupPrefixes
            configuration.authFingerprint = authFingerprint
            let layer = try RedisCoreChannelLayer(configuration: configuration, eventLoopGroup: eventLoopGroup, logger: logger, connectionCount: connectionCount)
            return RunnableRedisLayer(layer: layer, hosts: hosts, clustered: false, prefix: prefix) { () async throws(ChannelLayerError) in try await layer.run() }
        }
    }
}

/// A Redis layer ready to run: call ``run`` in a task for as long as ``layer`` is used.
public struct RunnableRedisLayer: Sendable {
    public let layer: any InboxChannelLayer
    /// The parsed hosts (the registry lives on the first), or the cluster's seeds.
    public let hosts: [RedisConfiguration]
    /// Whether ``hosts`` are Redis Cluster seeds.
    public let clustered: Bool
    public let prefix: String
    public let run: @Sendable () async throws(ChannelLayerError) -> Void
}

extension RunnableRedisLayer {
    /// Groups, members and nodes for listings (the HTTP API, the admin page), read from the membership
    /// registry on these hosts, across a cluster's primaries.
    public func directory(kind: RedisLayerSettings.Kind) -> any ClusterDirectory {
        RegistryDirectory(hosts: hosts, clustered: clustered, prefix: prefix, kind: kind)
    }

    /// The hosts as logs may show them (passwords as `***`).
    public var redactedHosts: [String] { hosts.map(\.redactedDescription) }

    /// The live nodes in the registry, other than `nodeID`, whose authentication settings differ from
    /// `fingerprint` (a node without JWT opens its peers' rooms to anyone through Redis); empty when the
    /// registry cannot be read.
    public func peers(authenticatingOtherThan fingerprint: String, nodeID: String) async -> [String] {
        guard let session = try? await RedisSession.open(hosts: hosts, clustered: clustered) else { return [] }
        defer { Task { await session.close() } }
        guard let nodes = try? await RegistryReader(connection: session, prefix: prefix).nodes() else { return [] }
        return nodes.filter { $0.alive && $0.id != nodeID && $0.auth != nil && $0.auth != fingerprint }.map(\.id)
    }
}
