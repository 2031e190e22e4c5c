import ArgumentParser

/// Every option of `channels-node`, each also read from the environment variable its help names: add it to
/// your own command with `@OptionGroup var options: NodeOptions` and run a ``NodeApplication`` with it.
///
/// ```swift
/// @main struct MyNode: AsyncParsableCommand {
///     @OptionGroup var options: NodeOptions
///     func run() async throws {
///         var router = ConsumerRouter()
///         router.add("/ws/board/<game>/", ScoreboardConsumer.self)
///         try await NodeApplication(options: options, router: router).run()
///     }
/// }
/// ```
public struct NodeOptions: ParsableArguments, Sendable {
    /// What `--help` says about the layer, drain and environment, for a command's discussion.
    public static let discussion = """
        Without --redis the node uses the in-memory layer (one process). With --redis (repeatable, one URL per \
        shard) or CHANNELS_REDIS_URL (comma-separated) it uses a Redis layer shared with other nodes and Django \
        processes: channels_redis' pub/sub layer by default, its core RedisChannelLayer (Django's default) with \
        --layer core; --redis-cluster runs the pub/sub layer on Redis Cluster. Every option also reads the \
        environment variable named in its help. SIGTERM drains: readiness false, new connections refused, \
        clients closed with 1001 at --drain-rate per second, exit 0 within --drain-time.
        """

    @Option(help: "Address to bind (CHANNELS_HOST). [default: 127.0.0.1]")
    var host: String?

    @Option(help: "Port to listen on (CHANNELS_PORT). [default: 8000]")
    var port: Int?

    @Option(name: .customLong("redis"), help: "Redis URL, repeat for shards (CHANNELS_REDIS_URL, comma-separated).")
    var redisURLs: [String] = []

    @Option(name: .customLong("redis-cluster"), help: "A Redis Cluster seed node HOST:PORT (or redis://user:password@HOST:PORT), repeatable: sharded pub/sub over the cluster instead of --redis (CHANNELS_REDIS_CLUSTER, comma-separated).")
    var redisCluster: [String] = []

    @Option(help: "pubsub (channels_redis.pubsub.RedisPubSubChannelLayer) or core (channels_redis.core.RedisChannelLayer, Django's default) (CHANNELS_LAYER). [default: pubsub]")
    var layer: String?

    @Option(help: "Prefix of Redis channels and keys (CHANNELS_PREFIX). [default: asgi]")
    var prefix: String?

    @Option(help: "File of Django's symmetric_encryption_keys, one per line; core layer (or CHANNELS_SYMMETRIC_ENCRYPTION_KEYS, comma-separated).")
    var encryptionKeyFile: String?

    @Option(help: "Seconds a member stays in a group without being written again, Django's group_expiry; the node writes its members again well before (CHANNELS_GROUP_EXPIRY). [default: 86400]")
    var groupExpiry: Double?

    @Option(help: "Seconds a message waits in a queue, Django's expiry (CHANNELS_EXPIRY). [default: 60]")
    var expiry: Double?

    @Option(name: .customLong("channel-capacity"), help: "PATTERN=CAPACITY for channels whose name matches the glob, Django's channel_capacity, repeatable; core layer (CHANNELS_CHANNEL_CAPACITY, comma-separated). Node queues (specific.*) hold 10000 unless a pattern matches them, e.g. 'specific.*=100' for Django's.")
    var channelCapacities: [String] = []

    @Option(help: "This node's id (CHANNELS_NODE_ID). [default: node-<random>]")
    var nodeID: String?

    @Option(help: "Messages a channel queue holds (CHANNELS_CAPACITY). [default: 100]")
    var capacity: Int?

    @Option(help: "Largest client message in bytes; larger ones close with 1009 (CHANNELS_MAX_MESSAGE_SIZE). [default: 65536]")
    var maxMessageSize: Int?

    @Option(help: "Layer messages waiting for a consumer's handler code before the client is closed as slow, 4008 (CHANNELS_MAX_QUEUED_MESSAGES). [default: 1024]")
    var maxQueuedMessages: Int?

    @Option(help: "Bytes waiting to be written to a client before it is closed as slow, 4008 (CHANNELS_MAX_QUEUED_BYTES). [default: 4194304]")
    var maxQueuedBytes: Int?

    @Option(help: "Event loop threads serving connections and Redis (CHANNELS_EVENT_LOOPS). [default: one per core]")
    var eventLoops: Int?

    @Option(help: "Seconds a client past a quarter of --max-queued-bytes holds publishers into its groups, on every node, before they go on without it; 0 = publishers never wait (CHANNELS_SLOW_READER_GRACE). [default: 1]")
    var slowReaderGrace: Double?

    @Option(help: "Bytes waiting to be written to all clients together before the largest backlogs are closed with 4008, 0 = no bound (CHANNELS_MAX_NODE_QUEUED_BYTES). [default: 1073741824]")
    var maxNodeQueuedBytes: Int?

    @Option(help: "Invalid frames: error-frame or close (1007) (CHANNELS_INVALID_FRAME). [default: error-frame]")
    var invalidFrame: String?

    @Option(name: .customLong("allowed-origin"), help: "Browser origin allowed to connect, repeatable; none allows all (CHANNELS_ALLOWED_ORIGINS, comma-separated).")
    var allowedOrigins: [String] = []

    @Option(help: "Seconds a graceful shutdown may take (CHANNELS_DRAIN_TIME). [default: 30]")
    var drainTime: Double?

    @Option(help: "Connections closed per second while draining (CHANNELS_DRAIN_RATE). [default: 500]")
    var drainRate: Int?

    @Option(help: "trace, debug, info, notice, warning, error or critical (CHANNELS_LOG_LEVEL). [default: info]")
    var logLevel: String?

    @Option(help: "WebSocket connections this node takes; more get 503/1013, 0 = no limit (CHANNELS_MAX_CONNECTIONS). [default: 0]")
    var maxConnections: Int?

    @Option(name: .customLong("history"), help: "Groups that keep a history for recovering clients, a glob, repeatable; none turns it off (CHANNELS_HISTORY, comma-separated). [default: chat_*]")
    var historyPatterns: [String] = []

    @Option(help: "Messages a history group keeps (CHANNELS_HISTORY_SIZE). [default: 1000]")
    var historySize: Int?

    @Option(help: "Seconds a group's history lives after its last message (CHANNELS_HISTORY_TTL). [default: 300]")
    var historyTtl: Double?

    @Option(help: "Bytes of messages a history group keeps at most, the oldest dropped first (CHANNELS_HISTORY_MAX_BYTES). [default: 1048576]")
    var historyMaxBytes: Int?

    @Option(help: "Seconds between pings to a quiet client; one that answers nothing for a whole interval is closed with 4408 (CHANNELS_PING_INTERVAL). [default: 30]")
    var pingInterval: Double?

    @Option(help: "Seconds a connection may take to send a whole request head (CHANNELS_HANDSHAKE_TIMEOUT). [default: 10]")
    var handshakeTimeout: Double?

    @Option(help: "Connections that have not upgraded the node holds; more are closed at once, 0 = no limit (CHANNELS_MAX_PENDING_HANDSHAKES). [default: 1024]")
    var maxPendingHandshakes: Int?

    @Option(help: "Each socket's kernel send buffer in bytes; small keeps a slow client's backlog counted (CHANNELS_SOCKET_SEND_BUFFER). [default: 131072]")
    var socketSendBuffer: Int?

    @Option(help: "Microseconds an event loop holds the group messages it wrote to its clients before flushing them, so that messages arriving meanwhile share the socket writes; 0 = flush at once (CHANNELS_FLUSH_DELAY). [default: 50]")
    var flushDelay: Int?

    @Option(help: "Messages per second a client may send; over it closes with 4029, 0 = no limit (CHANNELS_MAX_MESSAGES_PER_SECOND). [default: 0]")
    var maxMessagesPerSecond: Double?

    @Option(help: "Messages a client may send at once above that rate (CHANNELS_MESSAGE_BURST). [default: 50]")
    var messageBurst: Int?

    @Option(help: "File holding the HS256 secret; tokens become required (CHANNELS_JWT_HS256_SECRET_FILE, or CHANNELS_JWT_HS256_SECRET: the secret itself).")
    var jwtHs256SecretFile: String?

    @Option(help: "PEM file of the RS256 public key; tokens become required (CHANNELS_JWT_RS256_PUBLIC_KEY_FILE).")
    var jwtRs256PublicKeyFile: String?

    @Option(help: ArgumentHelp("The former name of --jwt-rs256-public-key-file.", visibility: .hidden))
    var jwtRs256PublicKey: String?

    @Option(help: "The iss claim tokens must carry (CHANNELS_JWT_ISSUER).")
    var jwtIssuer: String?

    @Option(help: "A value the aud claim of tokens must include (CHANNELS_JWT_AUDIENCE).")
    var jwtAudience: String?

    @Option(help: "Seconds a token's exp may lie ahead; longer-lived tokens are refused (CHANNELS_JWT_MAX_LIFETIME). [default: no bound]")
    var jwtMaxLifetime: Double?

    @Option(help: "The kid HS256 tokens must carry (CHANNELS_JWT_HS256_KEY_ID). [default: any]")
    var jwtHs256KeyId: String?

    @Option(help: "The kid RS256 tokens must carry (CHANNELS_JWT_RS256_KEY_ID). [default: any]")
    var jwtRs256KeyId: String?

    @Option(name: .customLong("django-path"), help: "A path prefix (/ws/) whose WebSocket upgrades go to Django workers (swift-channels-worker) ahead of every Swift route, repeatable (CHANNELS_DJANGO_PATHS, comma-separated).")
    var djangoPaths: [String] = []

    @Option(help: "Connections a user (a token's sub) may hold on all nodes together, counted in Redis; one more is closed with 4429, 0 = no limit (CHANNELS_MAX_CONNECTIONS_PER_USER). [default: 0]")
    var maxConnectionsPerUser: Int?

    @Option(help: "on or off: permessage-deflate with every client that offers it, each message compressed once for all its receivers (CHANNELS_COMPRESSION). [default: on]")
    var compression: String?

    @Option(help: "Frames smaller than this many bytes go uncompressed (CHANNELS_COMPRESSION_MIN_SIZE). [default: 256]")
    var compressionMinSize: Int?

    @Option(help: "Seconds a node is counted after its last word to Redis; then another node takes out its users, groups and presence members (leave events, webhooks) (CHANNELS_NODE_LEASE). [default: 30]")
    var nodeLease: Double?

    @Option(help: "URL the cluster POSTs its webhook events to, signed with --webhook-secret-file (CHANNELS_WEBHOOK_URL); pub/sub layer.")
    var webhookUrl: String?

    @Option(help: "File holding the webhooks' HMAC-SHA256 secret (CHANNELS_WEBHOOK_SECRET_FILE).")
    var webhookSecretFile: String?

    @Flag(help: "Log one info line per WebSocket connection opened and closed (CHANNELS_LOG_CONNECTIONS=1).")
    var logConnections = false

    @OptionGroup(title: "HTTP API and admin page") var api: APIOptions

    public init() {}
}
