import ArgumentParser
import ChannelLayers
import ChannelLayersRedis
import ChannelsChat
import ChannelsNode
import Foundation
import Logging
import Metrics
import Prometheus
import ServiceLifecycle
import UnixSignals
import HiredisClient
import Synchronization

/// `channels-node`: a WebSocket front node serving the seed apps' consumers: chat at `/ws/chat/<room>/`,
/// live model updates at `/ws/updates/<model>/`.
@main
struct ChannelsNodeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "channels-node",
        abstract: "Run a swift-channels WebSocket node.",
        discussion: """
            Without --redis the node uses the in-memory layer (one process). With --redis (repeatable, one \
            URL per shard) or CHANNELS_REDIS_URL (comma-separated) it uses a Redis layer shared with other \
            nodes and Django processes: channels_redis' pub/sub layer by default, its core RedisChannelLayer \
            (Django's default) with --layer core. Every option also reads the environment variable named \
            in its help. SIGTERM drains: readiness false, new connections refused, clients closed with 1001 \
            at --drain-rate per second, exit 0 within --drain-time.
            """
    )

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

    @Option(name: .customLong("channel-capacity"), help: "PATTERN=CAPACITY for channels whose name matches the glob, Django's channel_capacity, repeatable; core layer (CHANNELS_CHANNEL_CAPACITY, comma-separated).")
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

    @Option(help: "Seconds between pings to a quiet client; one that answers nothing for a whole interval is closed with 4408 (CHANNELS_PING_INTERVAL). [default: 30]")
    var pingInterval: Double?

    @Option(help: "Seconds a connection may take to send a whole request head (CHANNELS_HANDSHAKE_TIMEOUT). [default: 10]")
    var handshakeTimeout: Double?

    @Option(help: "Connections that have not upgraded the node holds; more are closed at once, 0 = no limit (CHANNELS_MAX_PENDING_HANDSHAKES). [default: 1024]")
    var maxPendingHandshakes: Int?

    @Option(help: "Each socket's kernel send buffer in bytes; small keeps a slow client's backlog counted (CHANNELS_SOCKET_SEND_BUFFER). [default: 131072]")
    var socketSendBuffer: Int?

    @Option(help: "Messages per second a client may send; over it closes with 4029, 0 = no limit (CHANNELS_MAX_MESSAGES_PER_SECOND). [default: 0]")
    var maxMessagesPerSecond: Double?

    @Option(help: "Messages a client may send at once above that rate (CHANNELS_MESSAGE_BURST). [default: 50]")
    var messageBurst: Int?

    @Option(help: "File holding the HS256 secret; tokens become required (or CHANNELS_JWT_HS256_SECRET, the secret itself).")
    var jwtHs256SecretFile: String?

    @Option(help: "PEM file of the RS256 public key; tokens become required (CHANNELS_JWT_RS256_PUBLIC_KEY_FILE).")
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

    @OptionGroup(title: "HTTP API and admin page") var api: APIOptions

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        func setting(_ value: String?, _ name: String) -> String? { value ?? environment[name].flatMap { $0.isEmpty ? nil : $0 } }
        func list(_ values: [String], _ name: String) -> [String] {
            values.isEmpty ? (environment[name] ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } : values
        }
        func number<T: LosslessStringConvertible>(_ value: T?, _ name: String, _ fallback: T) throws -> T {
            if let value { return value }
            guard let text = environment[name], !text.isEmpty else { return fallback }
            guard let parsed = T(text) else { throw ValidationError("\(name)='\(text)' is not a valid number") }
            return parsed
        }

        let levelName = setting(logLevel, "CHANNELS_LOG_LEVEL") ?? "info"
        guard let level = Logger.Level(rawValue: levelName) else {
            throw ValidationError("log level '\(levelName)' is not one of trace, debug, info, notice, warning, error, critical")
        }
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "channels-node")

        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.durationHistogramBuckets["channels_publish_to_deliver_seconds"] = [
            .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10),
            .milliseconds(20), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(5),
        ]
        MetricsSystem.bootstrap(factory)

        var limits = ConnectionLimits()
        limits.maxMessageSize = try number(maxMessageSize, "CHANNELS_MAX_MESSAGE_SIZE", limits.maxMessageSize)
        limits.maxQueuedMessages = try number(maxQueuedMessages, "CHANNELS_MAX_QUEUED_MESSAGES", limits.maxQueuedMessages)
        limits.maxQueuedBytes = try number(maxQueuedBytes, "CHANNELS_MAX_QUEUED_BYTES", limits.maxQueuedBytes)
        if let policy = setting(invalidFrame, "CHANNELS_INVALID_FRAME") {
            guard let parsed = ConnectionLimits.InvalidFramePolicy(rawValue: policy) else {
                throw ValidationError("--invalid-frame must be error-frame or close, not '\(policy)'")
            }
            limits.invalidFramePolicy = parsed
        }
        limits.maxMessagesPerSecond = try number(maxMessagesPerSecond, "CHANNELS_MAX_MESSAGES_PER_SECOND", 0)
        limits.messageBurst = try number(messageBurst, "CHANNELS_MESSAGE_BURST", limits.messageBurst)
        guard limits.maxMessagesPerSecond >= 0, limits.messageBurst > 0 else {
            throw ValidationError("--max-messages-per-second must be 0 or more and --message-burst positive")
        }
        guard limits.maxMessageSize > 0, limits.maxQueuedMessages > 0, limits.maxQueuedBytes > 0 else {
            throw ValidationError("message and queue limits must be positive")
        }

        let node_id = setting(nodeID, "CHANNELS_NODE_ID") ?? "node-\(String(UInt64.random(in: 0...UInt64.max), radix: 16).prefix(8))"
        let configuration = NodeConfiguration(
            host: setting(host, "CHANNELS_HOST") ?? "127.0.0.1",
            port: try number(port, "CHANNELS_PORT", 8000),
            nodeID: node_id,
            limits: limits,
            allowedOrigins: list(allowedOrigins, "CHANNELS_ALLOWED_ORIGINS"),
            drainTime: .milliseconds(Int64(try number(drainTime, "CHANNELS_DRAIN_TIME", 30.0) * 1000)),
            drainCloseRate: try number(drainRate, "CHANNELS_DRAIN_RATE", 500),
            pingInterval: .milliseconds(Int64(try number(pingInterval, "CHANNELS_PING_INTERVAL", 30.0) * 1000)),
            maxConnections: try number(maxConnections, "CHANNELS_MAX_CONNECTIONS", 0),
            handshakeTimeout: .milliseconds(Int64(try number(handshakeTimeout, "CHANNELS_HANDSHAKE_TIMEOUT", 10.0) * 1000)),
            maxPendingHandshakes: try number(maxPendingHandshakes, "CHANNELS_MAX_PENDING_HANDSHAKES", 1024),
            socketSendBuffer: try number(socketSendBuffer, "CHANNELS_SOCKET_SEND_BUFFER", 128 * 1024)
        )
        guard configuration.socketSendBuffer >= 4096 else { throw ValidationError("--socket-send-buffer must be at least 4096 bytes") }
        guard configuration.handshakeTimeout > .zero, configuration.maxPendingHandshakes >= 0, configuration.pingInterval >= .milliseconds(100) else {
            throw ValidationError("--handshake-timeout must be positive, --max-pending-handshakes 0 or more, --ping-interval at least 0.1 s")
        }
        guard configuration.maxConnections >= 0 else { throw ValidationError("--max-connections must be 0 or more") }
        let (middleware, authFingerprint) = try await authentication(setting: setting)
        let apiConfiguration = try api.configuration(environment: environment)

        var history = HistoryConfiguration(patterns: list(historyPatterns, "CHANNELS_HISTORY"))
        if history.patterns.isEmpty { history.patterns = ["chat_*"] }
        if history.patterns.allSatisfy({ $0 == "none" }) { history.patterns = [] }
        history.size = try number(historySize, "CHANNELS_HISTORY_SIZE", 1000)
        history.ttl = .milliseconds(Int64(try number(historyTtl, "CHANNELS_HISTORY_TTL", 300.0) * 1000))
        guard history.size > 0, history.ttl >= .seconds(1) else {
            throw ValidationError("--history-size must be positive and --history-ttl at least 1 second")
        }

        let urls = list(redisURLs, "CHANNELS_REDIS_URL")
        let clusterSeeds = list(redisCluster, "CHANNELS_REDIS_CLUSTER")
        guard urls.isEmpty || clusterSeeds.isEmpty else {
            throw ValidationError("give either --redis (single Redis or channels_redis' ring of hosts) or --redis-cluster (Redis Cluster), not both")
        }
        let queueCapacity = try number(capacity, "CHANNELS_CAPACITY", 100)
        let channelLayer: any ChannelLayer
        var layerRunner: (@Sendable () async throws -> Void)?
        var directory: (any ClusterDirectory)?
        let connectionCount = NodeReference()
        let layerName = setting(layer, "CHANNELS_LAYER") ?? "pubsub"
        let kind: RedisLayerSettings.Kind
        do { kind = try RedisLayerSettings.kind(named: layerName) } catch { throw ValidationError(error.message) }
        if urls.isEmpty && clusterSeeds.isEmpty {
            guard kind == .pubsub || setting(layer, "CHANNELS_LAYER") == nil else {
                throw ValidationError("--layer \(kind) needs Redis: pass --redis redis://HOST:PORT (or CHANNELS_REDIS_URL)")
            }
            channelLayer = InMemoryChannelLayer(configuration: .init(capacity: queueCapacity, history: history))
            logger.info("using the in-memory channel layer (single process); pass --redis to share groups between nodes")
        } else {
            var settings = RedisLayerSettings(kind: kind, urls: urls)
            settings.clusterSeeds = clusterSeeds
            settings.prefix = setting(prefix, "CHANNELS_PREFIX") ?? "asgi"
            settings.nodeID = node_id
            settings.capacity = queueCapacity
            settings.unlistedGroupPrefixes = ChannelsNode.unlistedGroupPrefixes
            settings.authFingerprint = authFingerprint
            settings.expiry = .milliseconds(Int64(try number(expiry, "CHANNELS_EXPIRY", 60.0) * 1000))
            settings.groupExpiry = .milliseconds(Int64(try number(groupExpiry, "CHANNELS_GROUP_EXPIRY", 86_400.0) * 1000))
            guard settings.expiry >= .seconds(1), settings.groupExpiry >= .seconds(1) else {
                throw ValidationError("--expiry and --group-expiry must be at least 1 second")
            }
            do {
                if let path = encryptionKeyFile {
                    settings.encryptionKeys = try RedisLayerSettings.encryptionKeys(fromFile: path)
                } else if let keys = setting(nil, "CHANNELS_SYMMETRIC_ENCRYPTION_KEYS") {
                    settings.encryptionKeys = RedisLayerSettings.encryptionKeys(fromList: keys)
                }
                settings.channelCapacities = try list(channelCapacities, "CHANNELS_CHANNEL_CAPACITY").map { text throws(ChannelLayerError) in
                    try ChannelCapacities.pattern(parsing: text)
                }
            } catch {
                throw ValidationError(error.message)
            }
            let historyChosen = !historyPatterns.isEmpty || environment["CHANNELS_HISTORY"] != nil
            if kind == .core {
                // Recovery needs the pub/sub layer's history; the core layer has none.
                if !history.patterns.isEmpty, historyChosen {
                    throw ValidationError("--history needs the pubsub layer; the core layer keeps no history (pass --history none, or --layer pubsub)")
                }
            } else {
                if !settings.encryptionKeys.isEmpty, !historyChosen {
                    // History numbers readable payloads in Redis: encrypted groups recover nothing.
                    history.patterns = []
                    logger.info("encrypted messages keep no history: recovery is off (pass --history none to say so)")
                }
                settings.history = history
                if !settings.channelCapacities.isEmpty {
                    throw ValidationError("--channel-capacity is a core layer setting; the pubsub layer has one --capacity")
                }
            }
            let redisLayer: RunnableRedisLayer
            do {
                redisLayer = try settings.makeLayer(connectionCount: { connectionCount.count })
            } catch {
                throw ValidationError(error.message)
            }
            channelLayer = redisLayer.layer
            layerRunner = { try await redisLayer.run() }
            directory = RegistryDirectory(hosts: redisLayer.hosts, clustered: redisLayer.clustered, prefix: redisLayer.prefix, kind: kind)
            Task { await Self.warnAboutPeersAuthenticatingDifferently(redisLayer, nodeID: node_id, ours: authFingerprint, logger: logger) }
            logger.info(
                "using the Redis \(kind == .core ? "core" : clusterSeeds.isEmpty ? "pub/sub" : "sharded pub/sub (Redis Cluster)") channel layer",
                metadata: ["redis": "\(redisLayer.hosts.map(\.redactedDescription))", "encrypted": "\(!settings.encryptionKeys.isEmpty)"]
            )
        }

        var router = ConsumerRouter()
        router.add("/ws/chat/<room>/", ChatConsumer.self)
        router.add("/ws/updates/<model>/", UpdatesConsumer.self)
        let node = ChannelsNode(
            configuration: configuration, layer: channelLayer, layerRunner: layerRunner, router: router, middleware: middleware,
            pages: ["/": ChannelsNode.Page(body: DemoPage.html)], metricsExport: { registry.emitToString() },
            api: apiConfiguration, directory: directory, layerName: urls.isEmpty ? "memory" : kind.rawValue, logger: logger
        )
        if apiConfiguration.isEnabled { logger.info("HTTP API on /api and admin page on /admin", metadata: ["keys": "\(apiConfiguration.keys.count)"]) }
        connectionCount.set(node)
        let group = ServiceGroup(
            configuration: .init(services: [.init(service: node)], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        )
        do {
            try await group.run()
        } catch {
            let message = (error as? ChannelLayerError)?.message ?? "\(error)"
            logger.critical("channels-node stopped: \(message)")
            throw ExitCode(1)
        }
    }
}

extension ChannelsNodeCommand {
    /// Authentication is per node: a node without the JWT settings of its peers opens their rooms to anyone
    /// through Redis. Once the registry has this node's first heartbeat, compare with the live peers' and warn.
    static func warnAboutPeersAuthenticatingDifferently(_ layer: RunnableRedisLayer, nodeID: String, ours: String, logger: Logger) async {
        try? await Task.sleep(for: .seconds(2))
        guard let session = try? await RedisSession.open(hosts: layer.hosts, clustered: layer.clustered) else { return }
        defer { Task { await session.close() } }
        guard let nodes = try? await RegistryReader(connection: session, prefix: layer.prefix).nodes() else { return }
        let others = nodes.filter { $0.alive && $0.id != nodeID && $0.auth != nil && $0.auth != ours }
        guard !others.isEmpty else { return }
        logger.warning(
            "nodes on this Redis authenticate differently from this one; every node of a cluster needs the same JWT settings, or clients of the weaker node reach the others' rooms through Redis",
            metadata: ["nodes": "\(others.map(\.id))", "this_node": "\(ours == "none" ? "no authentication" : "JWT")"]
        )
    }

    /// The JWT middleware when a key is configured, and the fingerprint of the settings (`none` without);
    /// a key that cannot be read stops the node with one line.
    func authentication(setting: (String?, String) -> String?) async throws -> (middleware: [any HandshakeMiddleware], fingerprint: String) {
        func read(_ path: String, _ what: String) throws -> String {
            guard let contents = FileManager.default.contents(atPath: path), let text = String(data: contents, encoding: .utf8) else {
                throw ValidationError("cannot read the \(what) file \(path)")
            }
            return text
        }
        var configuration = JWTAuthMiddleware.Configuration()
        if let path = jwtHs256SecretFile {
            configuration.hs256Secret = try read(path, "HS256 secret").trimmingCharacters(in: .whitespacesAndNewlines)
        } else {
            configuration.hs256Secret = setting(nil, "CHANNELS_JWT_HS256_SECRET")
        }
        if let path = setting(jwtRs256PublicKey, "CHANNELS_JWT_RS256_PUBLIC_KEY_FILE") {
            configuration.rs256PublicKeyPEM = try read(path, "RS256 public key")
        }
        configuration.issuer = setting(jwtIssuer, "CHANNELS_JWT_ISSUER")
        configuration.audience = setting(jwtAudience, "CHANNELS_JWT_AUDIENCE")
        configuration.hs256KeyID = setting(jwtHs256KeyId, "CHANNELS_JWT_HS256_KEY_ID")
        configuration.rs256KeyID = setting(jwtRs256KeyId, "CHANNELS_JWT_RS256_KEY_ID")
        if let text = setting(jwtMaxLifetime.map { String($0) }, "CHANNELS_JWT_MAX_LIFETIME") {
            guard let seconds = Double(text), seconds > 0 else {
                throw ValidationError("--jwt-max-lifetime must be a positive number of seconds, not '\(text)'")
            }
            configuration.maxLifetime = .milliseconds(Int64(seconds * 1000))
        }
        guard configuration.hs256Secret != nil || configuration.rs256PublicKeyPEM != nil else { return ([], "none") }
        do {
            return ([try await JWTAuthMiddleware(configuration: configuration)], configuration.fingerprint)
        } catch {
            throw ValidationError(error.description)
        }
    }
}

/// Lets the layer's registry ask the node for its connection count, though the node is made after the layer.
final class NodeReference: Sendable {
    private let node = Mutex<ChannelsNode?>(nil)
    func set(_ value: ChannelsNode) { node.withLock { $0 = value } }
    var count: Int? { node.withLock { $0?.connectionCount } }
}
