import ChannelLayers
import ChannelsProtocol
import HiredisClient
import Logging
import NIOCore
import NIOPosix
import Synchronization

extension RedisCoreChannelLayer {
    /// Where Redis is and how the layer behaves; the defaults are channels_redis'.
    public struct Configuration: Sendable {
        /// The Redis hosts, in the order Django lists them (names are sharded over them by that order).
        public var hosts: [RedisConfiguration]
        /// The prefix of every key (`asgi`).
        public var prefix: String
        /// How long a message waits in a queue (`expiry`, 60 s).
        public var expiry: Duration
        /// How long a membership lasts without being written again (`group_expiry`, 86,400 s).
        public var groupExpiry: Duration
        /// Queue capacities: `capacity` (100) and the `channel_capacity` patterns.
        public var capacities: ChannelCapacities
        /// `symmetric_encryption_keys`: the first encrypts, any decrypts; empty: no encryption.
        public var encryptionKeys: [String]
        /// Random bytes before each body (`random_prefix_length`, 12).
        public var randomPrefixLength: Int
        /// How long one `BZPOPMIN` blocks (`brpop_timeout`, 5 s).
        public var receiveTimeout: Duration
        /// The most messages one receive step takes from the queue (one script, one round trip).
        public var receiveBatch: Int
        /// This process's id in the registry (letters, digits, `-`, `_`, `.`).
        public var nodeID: String
        /// Whether to record memberships in the registry for operators (see ``MembershipRegistry``).
        public var registry: Bool
        public var heartbeatInterval: Duration
        public var registryTTL: Duration
        public var reconnectPolicy: RedisReconnectPolicy
        /// Groups kept out of the registry (a node's readiness probe).
        public var unlistedGroupPrefixes: [String] = []
        /// A fingerprint of the node's authentication settings, written to the registry.
        public var authFingerprint = "none"

        public init(
            hosts: [RedisConfiguration],
            prefix: String = "asgi",
            expiry: Duration = .seconds(60),
            groupExpiry: Duration = .seconds(86_400),
            capacities: ChannelCapacities = ChannelCapacities(),
            encryptionKeys: [String] = [],
            nodeID: String? = nil
        ) {
            self.hosts = hosts
            self.prefix = prefix
            self.expiry = expiry
            self.groupExpiry = groupExpiry
            self.capacities = capacities
            self.encryptionKeys = encryptionKeys
            self.randomPrefixLength = 12
            self.receiveTimeout = .seconds(5)
            self.receiveBatch = 256
            self.nodeID = nodeID ?? String(ChannelName.random(prefix: "node-").prefix(17))
            self.registry = true
            self.heartbeatInterval = .seconds(10)
            self.registryTTL = .seconds(30)
            self.reconnectPolicy = RedisReconnectPolicy()
        }

        /// A configuration from Redis URLs, one per host.
        public init(urls: [String]) throws(ChannelLayerError) {
            self.init(hosts: try RedisConfiguration.hosts(urls))
        }

        /// How often memberships are written again: well inside `groupExpiry`, at most hourly.
        var membershipRefreshInterval: Duration {
            min(.seconds(3600), max(.milliseconds(500), groupExpiry / 3))
        }
    }
}
