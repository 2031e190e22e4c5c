import Foundation

/// The Django project of `examples/django-chat` behind nodes: its workers (`swift-channels-worker`), its HTTP
/// side (uvicorn, for the login and the views), on one Redis and one SQLite file, for the bridge's tests.
public final class DjangoChatProject: Sendable {
    public static let directory = ScriptedCluster.packageRoot.appendingPathComponent("examples/django-chat")

    public let redisURL: String
    public let layer: String
    public let fastPath: Bool
    public let database: String
    private let python: String

    /// Migrates a new database for the project.
    public init(redisURL: String, layer: String, fastPath: Bool = true) async throws {
        self.redisURL = redisURL
        self.layer = layer
        self.fastPath = fastPath
        self.python = try PythonProcess.interpreter(packageRoot: ScriptedCluster.packageRoot)
        self.database = FileManager.default.temporaryDirectory.appendingPathComponent("django-chat-\(UUID().uuidString.prefix(8)).sqlite3").path
        let migrate = try await run(
            "/bin/bash", ["-c", "cd '\(Self.directory.path)' && exec '\(python)' manage.py migrate --noinput"], environment: environment
        )
        guard migrate.status == 0 else { throw TestSupportError("manage.py migrate failed:\n\(migrate.output)") }
    }

    deinit {
        try? FileManager.default.removeItem(atPath: database)
    }

    /// What the project's settings read.
    public var environment: [String: String] {
        ["CHANNELS_REDIS_URL": redisURL, "CHANNELS_LAYER": layer, "DJANGO_DB_PATH": database, "CHAT_FAST_PATH": fastPath ? "1" : "0"]
    }

    /// The arguments a node needs to serve this project's WebSockets.
    public var nodeArguments: [String] {
        ["--layer", layer, "--django-path", "/ws/"] + (layer == "core" ? ["--history", "none"] : [])
    }

    /// Starts `swift-channels-worker chatproj.asgi:application` in the project's directory (the console script of
    /// the venv's `pip install python/`) and waits until it serves.
    public func startWorker(arguments: [String] = [], environment extra: [String: String] = [:]) async throws -> PythonProcess {
        let script = URL(fileURLWithPath: python).deletingLastPathComponent().appendingPathComponent("swift-channels-worker").path
        let worker = try PythonProcess(
            python: "/bin/bash",
            script: "-c",
            arguments: ["cd '\(Self.directory.path)' && exec '\(script)' chatproj.asgi:application " + arguments.joined(separator: " ")],
            environment: environment.merging(extra) { $1 }
        )
        var line = ""
        while !line.hasPrefix("swift-channels-worker: serving") { line = try await worker.nextLine(timeout: .seconds(60)) }
        return worker
    }

    /// Serves the project's HTTP side (`examples/django-chat/run`: uvicorn without WebSockets) on a free port.
    public func startHTTP(demoUser: String? = nil, webSocketURL: String? = nil) async throws -> (process: PythonProcess, port: Int) {
        let port = try freePort()
        var environment = self.environment
        environment["DJANGO_PORT"] = String(port)
        environment["PYTHON"] = python
        if let demoUser { environment["CHAT_DEMO_USER"] = demoUser }
        if let webSocketURL { environment["CHAT_WS_URL"] = webSocketURL }
        let server = try PythonProcess(python: "/bin/bash", script: Self.directory.appendingPathComponent("run").path, arguments: [], environment: environment)
        var line = ""
        while !line.hasPrefix("django-chat: ") { line = try await server.nextLine(timeout: .seconds(60)) }
        return (server, port)
    }

    /// Starts two nodes serving the project's WebSockets on `redis` (with `arguments` after the project's) and
    /// waits until each hears `workers` ready workers; stops them if that fails.
    public func startNodes(redis: String, hearing workers: Int, arguments: [String] = []) async throws -> [NodeProcess] {
        let nodes = [
            try await NodeProcess.start(redis: [redis], arguments: nodeArguments + arguments),
            try await NodeProcess.start(redis: [redis], arguments: nodeArguments + arguments),
        ]
        do {
            for node in nodes { try await Self.waitForWorkers(workers, on: node) }
        } catch {
            for node in nodes { node.terminate() }
            throw error
        }
        return nodes
    }

    /// Waits until `node` hears `count` ready workers (its `channels_django_workers` gauge).
    public static func waitForWorkers(_ count: Int, on node: NodeProcess, timeout: Duration = .seconds(20)) async throws {
        let heard = await eventually(timeout: timeout, every: .milliseconds(50)) {
            (try? await metric("channels_django_workers", on: node)) == Double(count)
        }
        guard heard else { throw TestSupportError("node \(node.port) did not hear \(count) Django workers within \(timeout); log:\n\(node.log)") }
    }

    /// A metric's value on a node's `/metrics` (the sum of its series), or `nil` when it is not there.
    public static func metric(_ name: String, on node: NodeProcess) async throws -> Double? {
        let body = try await node.get("/metrics").body
        var total: Double?
        for line in body.split(separator: "\n") where !line.hasPrefix("#") {
            guard line.hasPrefix(name + " ") || line.hasPrefix(name + "{") else { continue }
            guard let value = line.split(separator: " ").last.flatMap({ Double($0) }) else { continue }
            total = (total ?? 0) + value
        }
        return total
    }
}
