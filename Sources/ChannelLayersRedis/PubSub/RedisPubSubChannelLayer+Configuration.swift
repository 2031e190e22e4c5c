import ChannelLayers
import ChannelsProtocol
import HiredisClient
import Logging
import NIOCore
import NIOPosix
import Synchronization

extension RedisPubSubChannelLayer {
    /// Where Redis is and how the layer behaves.
    public struct Configuration: Sendable {
        /// The Redis hosts; names are sharded over them in this order, as channels_redis does.
        public var hosts: [RedisConfiguration]
        /// Redis Cluster seed nodes; when given, ``hosts`` is not used and pub/sub is sharded (Redis 7).
        public var cluster: [RedisConfiguration] = []
        /// The prefix of every Redis channel and registry key (channels_redis' default is `asgi`).
        public var prefix: String
        /// Messages a local channel holds before more are dropped (`send` to a local channel throws).
        public var capacity: Int
        /// How long an unreceived message waits in a local queue.
        public var expiry: Duration
        /// This process's id in the registry: letters, digits, `-`, `_`, `.` (default: `node-` and 12 random hex digits).
        public var nodeID: String
        /// Whether to record memberships in Redis for operators.
        public var registry: Bool
        /// How often the registry's heartbeat is written.
        public var heartbeatInterval: Duration
        /// How long registry entries outlive the last heartbeat; also the node's lease in the cluster's shared
        /// state (``ClusterState``): a node silent that long is taken out by another node.
        public var registryTTL: Duration
        /// Webhook events kept in Redis at most while no receiver takes them; more are dropped and counted.
        public var maxWebhookEvents = 100_000
        /// How often a node looks for nodes whose lease expired.
        public var reapInterval: Duration = .seconds(5)
        /// Backoff between reconnection attempts.
        public var reconnectPolicy: RedisReconnectPolicy
        /// Groups whose names start with one of these are kept out of the registry (internal groups such as
        /// a node's readiness probe).
        public var unlistedGroupPrefixes: [String] = []
        /// A fingerprint of the node's authentication settings, written to the registry so that a node
        /// can see when its peers authenticate differently (`none`: no authentication).
        public var authFingerprint = "none"
        /// Which groups keep a history for recovering clients (keys in ``HistoryScript``).
        public var history = HistoryConfiguration.none
        /// Django's `symmetric_encryption_keys`: payloads are Fernet tokens made with the first and read
        /// with any. History groups need readable payloads (the history script numbers them in Redis), so
        /// encryption and history exclude each other.
        public var encryptionKeys: [String] = []

        public init(
            hosts: [RedisConfiguration],
            prefix: String = "asgi",
            capacity: Int = 100,
            expiry: Duration = .seconds(60),
            nodeID: String? = nil,
            registry: Bool = true,
            heartbeatInterval: Duration = .seconds(10),
            registryTTL: Duration = .seconds(30),
            reconnectPolicy: RedisReconnectPolicy = RedisReconnectPolicy()
        ) {
            self.hosts = hosts
            self.prefix = prefix
            self.capacity = capacity
            self.expiry = expiry
            self.nodeID = nodeID ?? String(ChannelName.random(prefix: "node-").prefix(17))
            self.registry = registry
            self.heartbeatInterval = heartbeatInterval
            self.registryTTL = registryTTL
            self.reconnectPolicy = reconnectPolicy
        }

        /// A configuration from Redis URLs, one per shard.
        public init(urls: [String]) throws(ChannelLayerError) {
            self.init(hosts: try RedisConfiguration.hosts(urls))
        }
    }
}
