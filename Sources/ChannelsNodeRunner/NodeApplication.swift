import ArgumentParser
import ChannelLayers
import ChannelLayersRedis
import ChannelsDjangoBridge
import ChannelsWebhooks
import ChannelsNode
import Foundation
import Logging
import Metrics
import NIOCore
import Prometheus
import ServiceLifecycle
import Synchronization
import UnixSignals

/// A node built from ``NodeOptions``, the way `channels-node` runs one: logging and Prometheus metrics,
/// the layer (in memory, Redis pub/sub, Django's core layer, Redis Cluster), JWT, the HTTP API, history,
/// limits, drain on SIGTERM; your router, pages and middleware.
///
/// ``run()`` returns after a graceful shutdown; a setting that cannot work (a bad URL, an unreadable key
/// file, a busy port) stops it with one line naming the setting and `ExitCode(1)`.
public struct NodeApplication: Sendable {
    public let options: NodeOptions
    public let router: ConsumerRouter
    /// Pages served at their paths (`/` shows the chat demo in `channels-node`).
    public let pages: [String: ChannelsNode.Page]
    /// Handshake middleware run after the node's own (origin check, JWT).
    public let middleware: [any HandshakeMiddleware]
    /// The logger's label.
    public let label: String

    public init(
        options: NodeOptions, router: ConsumerRouter, pages: [String: ChannelsNode.Page] = [:],
        middleware: [any HandshakeMiddleware] = [], label: String = "channels-node"
    ) {
        self.options = options
        self.router = router
        self.pages = pages
        self.middleware = middleware
        self.label = label
    }

    /// Runs the node until SIGTERM or SIGINT, then drains.
    public func run() async throws {
        let options = self.options
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

        // Before anything starts the shared event loops: their number is fixed when they are first used.
        let loops = try number(options.eventLoops, "CHANNELS_EVENT_LOOPS", 0)
        if loops != 0 {
            guard loops > 0, loops <= 256 else { throw ValidationError("--event-loops must be 1 to 256") }
            NIOSingletons.groupLoopCountSuggestion = loops
        }
        let levelName = setting(options.logLevel, "CHANNELS_LOG_LEVEL") ?? "info"
        guard let level = Logger.Level(rawValue: levelName) else {
            throw ValidationError("log level '\(levelName)' is not one of trace, debug, info, notice, warning, error, critical")
        }
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: label)

        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.durationHistogramBuckets["channels_publish_to_deliver_seconds"] = [
            .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10),
            .milliseconds(20), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(5),
        ]
        factory.durationHistogramBuckets["channels_django_event_seconds"] = [
            .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10),
            .milliseconds(20), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(5),
        ]
        MetricsSystem.bootstrap(factory)

        var limits = ConnectionLimits()
        limits.maxMessageSize = try number(options.maxMessageSize, "CHANNELS_MAX_MESSAGE_SIZE", limits.maxMessageSize)
        limits.maxQueuedMessages = try number(options.maxQueuedMessages, "CHANNELS_MAX_QUEUED_MESSAGES", limits.maxQueuedMessages)
        limits.maxQueuedBytes = try number(options.maxQueuedBytes, "CHANNELS_MAX_QUEUED_BYTES", limits.maxQueuedBytes)
        if let policy = setting(options.invalidFrame, "CHANNELS_INVALID_FRAME") {
            guard let parsed = ConnectionLimits.InvalidFramePolicy(rawValue: policy) else {
                throw ValidationError("--invalid-frame must be error-frame or close, not '\(policy)'")
            }
            limits.invalidFramePolicy = parsed
        }
        limits.maxMessagesPerSecond = try number(options.maxMessagesPerSecond, "CHANNELS_MAX_MESSAGES_PER_SECOND", 0)
        limits.messageBurst = try number(options.messageBurst, "CHANNELS_MESSAGE_BURST", limits.messageBurst)
        guard limits.maxMessagesPerSecond >= 0, limits.messageBurst > 0 else {
            throw ValidationError("--max-messages-per-second must be 0 or more and --message-burst positive")
        }
        limits.maxConnectionsPerUser = try number(options.maxConnectionsPerUser, "CHANNELS_MAX_CONNECTIONS_PER_USER", 0)
        guard limits.maxConnectionsPerUser >= 0 else { throw ValidationError("--max-connections-per-user must be 0 (no limit) or more") }
        switch setting(options.compression, "CHANNELS_COMPRESSION") ?? "on" {
        case "on": limits.compression = true
        case "off": limits.compression = false
        case let other: throw ValidationError("--compression must be on or off, not '\(other)'")
        }
        limits.compressionMinSize = try number(options.compressionMinSize, "CHANNELS_COMPRESSION_MIN_SIZE", limits.compressionMinSize)
        guard limits.compressionMinSize >= 0 else { throw ValidationError("--compression-min-size must be 0 or more") }
        let nodeLease = try number(options.nodeLease, "CHANNELS_NODE_LEASE", 30.0)
        guard nodeLease >= 1 else { throw ValidationError("--node-lease must be at least 1 second") }
        let grace = try number(options.slowReaderGrace, "CHANNELS_SLOW_READER_GRACE", 1.0)
        guard grace >= 0, grace <= 60 else { throw ValidationError("--slow-reader-grace must be 0 to 60 seconds") }
        limits.slowReaderGrace = .milliseconds(Int64(grace * 1000))
        guard limits.maxMessageSize > 0, limits.maxQueuedMessages > 0, limits.maxQueuedBytes > 0 else {
            throw ValidationError("message and queue limits must be positive")
        }

        let node_id = setting(options.nodeID, "CHANNELS_NODE_ID") ?? "node-\(String(UInt64.random(in: 0...UInt64.max), radix: 16).prefix(8))"
        var configuration = NodeConfiguration(
            host: setting(options.host, "CHANNELS_HOST") ?? "127.0.0.1",
            port: try number(options.port, "CHANNELS_PORT", 8000),
            nodeID: node_id,
            limits: limits,
            allowedOrigins: list(options.allowedOrigins, "CHANNELS_ALLOWED_ORIGINS"),
            drainTime: .milliseconds(Int64(try number(options.drainTime, "CHANNELS_DRAIN_TIME", 30.0) * 1000)),
            drainCloseRate: try number(options.drainRate, "CHANNELS_DRAIN_RATE", 500),
            pingInterval: .milliseconds(Int64(try number(options.pingInterval, "CHANNELS_PING_INTERVAL", 30.0) * 1000)),
            maxConnections: try number(options.maxConnections, "CHANNELS_MAX_CONNECTIONS", 0),
            handshakeTimeout: .milliseconds(Int64(try number(options.handshakeTimeout, "CHANNELS_HANDSHAKE_TIMEOUT", 10.0) * 1000)),
            maxPendingHandshakes: try number(options.maxPendingHandshakes, "CHANNELS_MAX_PENDING_HANDSHAKES", 1024),
            socketSendBuffer: try number(options.socketSendBuffer, "CHANNELS_SOCKET_SEND_BUFFER", 128 * 1024)
        )
        configuration.logConnections = options.logConnections || ["1", "true", "yes"].contains(environment["CHANNELS_LOG_CONNECTIONS"]?.lowercased() ?? "")
        guard configuration.socketSendBuffer >= 4096 else { throw ValidationError("--socket-send-buffer must be at least 4096 bytes") }
        guard configuration.handshakeTimeout > .zero, configuration.maxPendingHandshakes >= 0, configuration.pingInterval >= .milliseconds(100) else {
            throw ValidationError("--handshake-timeout must be positive, --max-pending-handshakes 0 or more, --ping-interval at least 0.1 s")
        }
        guard configuration.maxConnections >= 0 else { throw ValidationError("--max-connections must be 0 or more") }
        let flushDelay = try number(options.flushDelay, "CHANNELS_FLUSH_DELAY", 50)
        guard (0...10_000).contains(flushDelay) else { throw ValidationError("--flush-delay must be 0 to 10000 microseconds") }
        configuration.flushDelay = .microseconds(flushDelay)
        configuration.maxNodeQueuedBytes = try number(options.maxNodeQueuedBytes, "CHANNELS_MAX_NODE_QUEUED_BYTES", configuration.maxNodeQueuedBytes)
        guard configuration.maxNodeQueuedBytes == 0 || configuration.maxNodeQueuedBytes >= limits.maxQueuedBytes else {
            throw ValidationError("--max-node-queued-bytes must be 0 (no bound) or at least --max-queued-bytes (\(limits.maxQueuedBytes))")
        }
        let (authMiddleware, authFingerprint) = try await authentication(setting: setting)
        var apiConfiguration = try options.api.configuration(environment: environment)
        apiConfiguration.layerPrefix = setting(options.prefix, "CHANNELS_PREFIX") ?? "asgi"

        var history = HistoryConfiguration(patterns: list(options.historyPatterns, "CHANNELS_HISTORY"))
        if history.patterns.isEmpty { history.patterns = ["chat_*"] }
        if history.patterns.allSatisfy({ $0 == "none" }) { history.patterns = [] }
        history.size = try number(options.historySize, "CHANNELS_HISTORY_SIZE", 1000)
        history.ttl = .milliseconds(Int64(try number(options.historyTtl, "CHANNELS_HISTORY_TTL", 300.0) * 1000))
        history.maxBytes = try number(options.historyMaxBytes, "CHANNELS_HISTORY_MAX_BYTES", 1024 * 1024)
        guard history.size > 0, history.ttl >= .seconds(1), history.maxBytes >= 1024 else {
            throw ValidationError("--history-size must be positive, --history-ttl at least 1 second and --history-max-bytes at least 1024")
        }

        let urls = list(options.redisURLs, "CHANNELS_REDIS_URL")
        let clusterSeeds = list(options.redisCluster, "CHANNELS_REDIS_CLUSTER")
        guard urls.isEmpty || clusterSeeds.isEmpty else {
            throw ValidationError("give either --redis (single Redis or channels_redis' ring of hosts) or --redis-cluster (Redis Cluster), not both")
        }
        let queueCapacity = try number(options.capacity, "CHANNELS_CAPACITY", 100)
        let channelLayer: any InboxChannelLayer
        var layerRunner: (@Sendable () async throws -> Void)?
        var directory: (any ClusterDirectory)?
        let connectionCount = NodeReference()
        let layerName = setting(options.layer, "CHANNELS_LAYER") ?? "pubsub"
        // The groups the layer keeps a history for, as the Django bridge tells its workers.
        var historyPatterns: [String] = []
        let kind: RedisLayerSettings.Kind
        do { kind = try RedisLayerSettings.kind(named: layerName) } catch { throw ValidationError(error.message) }
        if urls.isEmpty && clusterSeeds.isEmpty {
            guard kind == .pubsub || setting(options.layer, "CHANNELS_LAYER") == nil else {
                throw ValidationError("--layer \(kind) needs Redis: pass --redis redis://HOST:PORT (or CHANNELS_REDIS_URL)")
            }
            channelLayer = InMemoryChannelLayer(configuration: .init(capacity: queueCapacity, history: history))
            historyPatterns = history.patterns
            logger.info("using the in-memory channel layer (single process); pass --redis to share groups between nodes")
        } else {
            var settings = RedisLayerSettings(kind: kind, urls: urls)
            settings.clusterSeeds = clusterSeeds
            settings.prefix = setting(options.prefix, "CHANNELS_PREFIX") ?? "asgi"
            settings.nodeID = node_id
            settings.capacity = queueCapacity
            settings.unlistedGroupPrefixes = ChannelsNode.unlistedGroupPrefixes + DjangoBridge.unlistedGroupPrefixes
            settings.authFingerprint = authFingerprint
            settings.nodeLease = .milliseconds(Int64(nodeLease * 1000))
            settings.expiry = .milliseconds(Int64(try number(options.expiry, "CHANNELS_EXPIRY", 60.0) * 1000))
            settings.groupExpiry = .milliseconds(Int64(try number(options.groupExpiry, "CHANNELS_GROUP_EXPIRY", 86_400.0) * 1000))
            guard settings.expiry >= .seconds(1), settings.groupExpiry >= .seconds(1) else {
                throw ValidationError("--expiry and --group-expiry must be at least 1 second")
            }
            do {
                if let path = options.encryptionKeyFile {
                    settings.encryptionKeys = try RedisLayerSettings.encryptionKeys(fromFile: path)
                } else if let keys = setting(nil, "CHANNELS_SYMMETRIC_ENCRYPTION_KEYS") {
                    settings.encryptionKeys = RedisLayerSettings.encryptionKeys(fromList: keys)
                }
                settings.channelCapacities = try list(options.channelCapacities, "CHANNELS_CHANNEL_CAPACITY").map { text throws(ChannelLayerError) in
                    try ChannelCapacities.pattern(parsing: text)
                }
            } catch {
                throw ValidationError(error.message)
            }
            let historyChosen = !options.historyPatterns.isEmpty || environment["CHANNELS_HISTORY"] != nil
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
                historyPatterns = history.patterns
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
            directory = redisLayer.directory(kind: kind)
            Task { await Self.warnAboutPeersAuthenticatingDifferently(redisLayer, nodeID: node_id, ours: authFingerprint, logger: logger) }
            logger.info(
                "using the Redis \(kind == .core ? "core" : clusterSeeds.isEmpty ? "pub/sub" : "sharded pub/sub (Redis Cluster)") channel layer",
                metadata: ["redis": "\(redisLayer.redactedHosts)", "encrypted": "\(!settings.encryptionKeys.isEmpty)"]
            )
        }

        // Bridged Django paths come before every route of the app's router.
        var router = self.router
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
        let djangoPaths = try list(options.djangoPaths, "CHANNELS_DJANGO_PATHS").map { text throws(ValidationError) in
            do throws(DjangoBridgeError) { return try DjangoBridgeConfiguration.prefix(text) } catch { throw ValidationError(error.message) }
        }
        if !djangoPaths.isEmpty {
            let bridge = DjangoBridge(
                configuration: DjangoBridgeConfiguration(
                    pathPrefixes: djangoPaths, server: (configuration.host, configuration.port),
                    connectTimeout: DjangoBridgeConfiguration.connectTimeout(handshakeTimeout: configuration.handshakeTimeout),
                    historyPatterns: historyPatterns
                ),
                layer: channelLayer, logger: Logger(label: "channels-django")
            )
            bridge.install(in: &router)
            // First in the group: a graceful shutdown stops the node (its drain tells the workers) before the bridge.
            services.append(.init(service: bridge))
            logger.info("WebSocket paths bridged to Django workers (swift-channels-worker)", metadata: ["prefixes": "\(djangoPaths)"])
        }

        if let url = setting(options.webhookUrl, "CHANNELS_WEBHOOK_URL"), !url.isEmpty {
            guard let queue = (channelLayer as? any WebhookChannelLayer)?.webhookEvents else {
                throw ValidationError("--webhook-url needs the Redis pub/sub layer (--redis URL, --layer pubsub): the events come from the cluster's shared state there")
            }
            guard let path = setting(options.webhookSecretFile, "CHANNELS_WEBHOOK_SECRET_FILE") else {
                throw ValidationError("--webhook-url needs --webhook-secret-file PATH: a file holding the secret the bodies are signed with")
            }
            let secret: [UInt8]
            do {
                secret = Array(try String(contentsOfFile: path, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines).utf8)
            } catch {
                throw ValidationError("cannot read --webhook-secret-file \(path): \(error)")
            }
            do throws(WebhookConfigurationError) {
                let sender = try WebhookSender(configuration: WebhookConfiguration(url: url, secret: secret), queue: queue, logger: Logger(label: "channels-webhooks"))
                // First in the group, so it stops after the node: the node's last leaves still make events.
                services.insert(.init(service: sender), at: 0)
            } catch {
                throw ValidationError(error.description)
            }
            logger.info("webhooks on", metadata: ["url": "\(url)"])
        }
        if limits.maxConnectionsPerUser > 0, !(channelLayer is any UserChannelLayer) {
            throw ValidationError("--max-connections-per-user needs the in-memory or the Redis pub/sub layer; the core layer keeps no shared user counts")
        }

        let node = ChannelsNode(
            configuration: configuration, layer: channelLayer, layerRunner: layerRunner, router: router, middleware: authMiddleware + self.middleware,
            pages: pages, metricsExport: { registry.emitToString() },
            api: apiConfiguration, directory: directory, layerName: urls.isEmpty && clusterSeeds.isEmpty ? "memory" : kind.rawValue, logger: logger
        )
        if apiConfiguration.isEnabled { logger.info("HTTP API on /api and admin page on /admin", metadata: ["keys": "\(apiConfiguration.keys.count)"]) }
        connectionCount.set(node)
        let group = ServiceGroup(
            configuration: .init(services: services + [.init(service: node)], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        )
        do {
            try await group.run()
        } catch {
            let message = (error as? ChannelLayerError)?.message ?? "\(error)"
            logger.critical("\(label) stopped: \(message)")
            throw ExitCode(1)
        }
    }
}
