import ChannelLayers
import ChannelLayersRedis
import ChannelsProtocol
import ChannelsTestSupport
import Foundation
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

/// Runs core layers for the length of a test body and stops them after.
func withCoreLayers<T: Sendable>(
    _ configurations: [RedisCoreChannelLayer.Configuration],
    _ body: ([RedisCoreChannelLayer]) async throws -> T
) async throws -> T {
    let layers = try configurations.map { try RedisCoreChannelLayer(configuration: $0) }
    let runners = layers.map { layer in Task { try await layer.run() } }
    defer { for runner in runners { runner.cancel() } }
    return try await body(layers)
}

/// The real channels_redis, driven by `Interop/channels_interop.py` in the interop venv.
enum Interop {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let script = packageRoot.appendingPathComponent("Tests/ChannelLayersRedisTests/Interop/channels_interop.py").path

    static func python(_ arguments: [String]) throws -> PythonProcess {
        try PythonProcess(python: try PythonProcess.interpreter(packageRoot: packageRoot), script: script, arguments: arguments)
    }

    /// The channel name after the script's `READY` line.
    static func ready(_ process: PythonProcess) async throws -> String {
        let line = try await process.nextLine()
        guard line.hasPrefix("READY ") else { throw TestSupportError("python said '\(line)'; stderr: \(process.standardError)") }
        return String(line.dropFirst(6))
    }
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

/// Whether a group send started on `layer` is refused (nil: not started) or its receipt fails as unavailable.
func isRefusedOrUnavailable(_ layer: any PipelinedGroupSendLayer, _ message: Message, to group: String) async throws -> Bool {
    guard let receipt = try layer.startGroupSend(message, to: group) else { return true }
    do {
        try await receipt.confirmed()
        return false
    } catch {
        return error.code == .unavailable
    }
}

func publishCalls(_ connection: RedisConnection) async throws -> Int {
    let info = try await connection.send("INFO", "commandstats").string ?? ""
    guard let line = info.split(whereSeparator: \.isNewline).first(where: { $0.hasPrefix("cmdstat_publish:") }) else { return 0 }
    let calls = line.split(separator: ",").first { $0.contains("calls=") }?.split(separator: "=").last
    return calls.flatMap { Int($0) } ?? 0
}
