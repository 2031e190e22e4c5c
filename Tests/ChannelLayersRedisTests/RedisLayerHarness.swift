import ChannelLayers
import ChannelLayersRedis
import ChannelsTestSupport
import HiredisClient

/// Runs Redis layers for the length of a test body and stops them after.
func withRedisLayers<T: Sendable>(
    _ configurations: [RedisPubSubChannelLayer.Configuration],
    _ body: ([RedisPubSubChannelLayer]) async throws -> T
) async throws -> T {
    let layers = try configurations.map { try RedisPubSubChannelLayer(configuration: $0) }
    let runners = layers.map { layer in Task { try await layer.run() } }
    defer { for runner in runners { runner.cancel() } }
    return try await body(layers)
}

extension RedisServer {
    func layerConfiguration(nodeID: String, capacity: Int = 100) -> RedisPubSubChannelLayer.Configuration {
        RedisPubSubChannelLayer.Configuration(
            hosts: [configuration()],
            capacity: capacity,
            nodeID: nodeID,
            reconnectPolicy: RedisReconnectPolicy(initialDelay: .milliseconds(50), maximumDelay: .milliseconds(300))
        )
    }

    /// A command connection for inspecting the server in tests.
    func inspector() async throws -> RedisConnection {
        try await RedisConnection.connect(configuration: configuration())
    }
}

func numberOfSubscribers(_ connection: RedisConnection, _ channel: String) async throws -> Int64 {
    let reply = try await connection.send("PUBSUB", "NUMSUB", .string(channel))
    return reply.array?.last?.integer ?? -1
}

func publishCalls(_ connection: RedisConnection) async throws -> Int {
    let info = try await connection.send("INFO", "commandstats").string ?? ""
    guard let line = info.split(whereSeparator: \.isNewline).first(where: { $0.hasPrefix("cmdstat_publish:") }) else { return 0 }
    let calls = line.split(separator: ",").first { $0.contains("calls=") }?.split(separator: "=").last
    return calls.flatMap { Int($0) } ?? 0
}
