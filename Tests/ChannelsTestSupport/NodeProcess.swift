import Foundation
import Synchronization

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A real `channels-node` process on a free loopback port, for tests.
///
/// The binary is `.build/debug/channels-node` (or `$CHANNELS_NODE_BINARY`); `scripts/test` builds it first.
public final class NodeProcess: Sendable {
    public let port: Int
    public let nodeID: String
    public let logPath: String
    private let process: Mutex<Process>

    public var url: String { "http://127.0.0.1:\(port)" }

    /// Starts a node and waits until `/readyz` answers 200.
    /// - Parameters:
    ///   - redis: Redis URLs (none: the in-memory layer).
    ///   - arguments: more command-line options.
    ///   - openFileLimit: the node's soft `RLIMIT_NOFILE` from its start (through `prlimit`), to run it out of descriptors.
    public static func start(
        redis: [String] = [],
        nodeID: String? = nil,
        arguments: [String] = [],
        environment: [String: String] = [:],
        waitForReady: Bool = true,
        openFileLimit: Int? = nil
    ) async throws -> NodeProcess {
        let port = try freePort()
        let id = nodeID ?? "test-node-\(port)"
        let node = try NodeProcess(port: port, nodeID: id, redis: redis, arguments: arguments, environment: environment, openFileLimit: openFileLimit)
        if waitForReady {
            let ready = await eventually(timeout: .seconds(20), every: .milliseconds(50)) {
                (try? await node.get("/readyz").status) == 200
            }
            guard ready else {
                node.kill()
                throw TestSupportError("channels-node on port \(port) was not ready within 20 s; log:\n\(node.log)")
            }
        }
        return node
    }

    private init(port: Int, nodeID: String, redis: [String], arguments: [String], environment: [String: String], openFileLimit: Int?) throws {
        self.port = port
        self.nodeID = nodeID
        self.logPath = FileManager.default.temporaryDirectory.appendingPathComponent("channels-node-\(port).log").path
        let process = Process()
        let options = ["--port", String(port), "--node-id", nodeID] + redis.flatMap { ["--redis", $0] } + arguments
        if let openFileLimit {
            // prlimit sets the limit and execs the node: the process id stays the node's. Only the soft limit
            // moves, so that a test may raise it again.
            process.executableURL = URL(fileURLWithPath: "/usr/bin/prlimit")
            process.arguments = ["--nofile=\(openFileLimit):", try Self.binary()] + options
        } else {
            process.executableURL = URL(fileURLWithPath: try Self.binary())
            process.arguments = options
        }
        var env = ProcessInfo.processInfo.environment
        env.removeValue(forKey: "CHANNELS_REDIS_URL")
        for (key, value) in environment { env[key] = value }
        process.environment = env
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = FileHandle(forWritingAtPath: logPath)
        process.standardOutput = log
        process.standardError = log
        try ChildProcesses.launch { try process.run() }
        self.process = Mutex(process)
    }

    public static func binary() throws -> String {
        if let path = ProcessInfo.processInfo.environment["CHANNELS_NODE_BINARY"] { return path }
        return try builtProduct("channels-node")
    }

    /// The node's log so far.
    public var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    public var processIdentifier: Int32 { process.withLock { $0.processIdentifier } }

    public var isRunning: Bool { process.withLock { $0.isRunning } }

    /// Sends SIGTERM (a graceful drain).
    public func terminate() {
        process.withLock { _ = Glibc.kill($0.processIdentifier, SIGTERM) }
    }

    /// Ends the node at once (SIGKILL), like a crash.
    public func kill() {
        ChildProcesses.signalAndWait(processIdentifier, SIGKILL)
        // Then Foundation's view, which callers may read next.
        process.withLock { _ = ChildProcesses.waitUntilNotRunning($0, timeout: .seconds(5)) }
    }

    /// Waits for the process to exit; its exit status, or `nil` if it still runs after `timeout`.
    public func exitStatus(timeout: Duration = .seconds(30)) async -> Int32? {
        let exited = await eventually(timeout: timeout, every: .milliseconds(20)) { !self.isRunning }
        guard exited else { return nil }
        return process.withLock { $0.terminationStatus }
    }

    /// A GET to the node: status and body.
    public func get(_ path: String) async throws -> (status: Int, body: String) {
        try await httpGet(port: port, path: path)
    }

    deinit {
        ChildProcesses.signalAndWait(processIdentifier, SIGKILL)
        try? FileManager.default.removeItem(atPath: logPath)
    }
}

/// A plain HTTP GET on 127.0.0.1, with extra headers.
public func httpGet(port: Int, path: String, headers: [String: String] = [:]) async throws -> (status: Int, body: String) {
    var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)\(path)")!)
    request.timeoutInterval = 5
    for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
    let (data, response) = try await URLSession.shared.data(for: request)
    return ((response as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data, as: UTF8.self))
}

/// The path of an executable product of this package in the debug build (`channels-ctl`, `channels-bench`).
public func builtProduct(_ name: String) throws -> String {
    let path = ScriptedCluster.packageRoot.appendingPathComponent(".build/debug/\(name)").path
    guard FileManager.default.isExecutableFile(atPath: path) else {
        throw TestSupportError("no \(name) at \(path): run `swift build` first (scripts/test does)")
    }
    return path
}

/// Raises this process's open-file limit (the soft limit, up to the hard one) for tests with many sockets.
public func raiseOpenFileLimit(to wanted: UInt64) {
    var limit = rlimit()
    getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    let target = min(rlim_t(wanted), limit.rlim_max)
    if limit.rlim_cur < target {
        limit.rlim_cur = target
        setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    }
}
