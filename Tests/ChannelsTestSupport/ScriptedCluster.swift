import Foundation

/// The loopback cluster of `scripts/cluster` (Redis, nodes, haproxy) on free ports in a temporary folder.
public final class ScriptedCluster: Sendable {
    public let directory: String
    public let port: Int
    public let redisPort: Int
    public let basePort: Int
    public let nodes: Int

    public static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    public var redisURL: String { "redis://127.0.0.1:\(redisPort)" }

    /// Runs `scripts/cluster up`.
    public static func up(nodes: Int = 3) async throws -> ScriptedCluster {
        // Every port from one block below the ephemeral range: a port the kernel hands out as free (port 0)
        // can be taken as the source port of a client socket before haproxy or Redis binds it.
        let block = try freeConsecutivePorts(nodes + 2)
        let cluster = ScriptedCluster(
            directory: FileManager.default.temporaryDirectory.appendingPathComponent("cluster-\(UUID().uuidString.prefix(8))").path,
            port: block, redisPort: block + 1, basePort: block + 2, nodes: nodes
        )
        let result = try await cluster.script("up")
        guard result.status == 0 else {
            _ = try? await cluster.script("down")
            throw TestSupportError("scripts/cluster up failed (\(result.status)):\n\(result.output)")
        }
        return cluster
    }

    private init(directory: String, port: Int, redisPort: Int, basePort: Int, nodes: Int) {
        self.directory = directory
        self.port = port
        self.redisPort = redisPort
        // Node ports are consecutive from basePort.
        self.basePort = basePort
        self.nodes = nodes
    }

    /// Runs `scripts/cluster <command>` with this cluster's settings.
    public func script(_ command: String) async throws -> (status: Int32, output: String) {
        try await run(
            "/bin/bash", [Self.packageRoot.appendingPathComponent("scripts/cluster").path, command],
            environment: [
                "CLUSTER_DIR": directory, "CLUSTER_NODES": String(nodes), "CLUSTER_PORT": String(port),
                "CLUSTER_REDIS_PORT": String(redisPort), "CLUSTER_NODE_BASE_PORT": String(basePort),
                "CHANNELS_NODE_BINARY": try NodeProcess.binary(),
            ]
        )
    }

    /// The process id of `node<index>` (1-based).
    public func pid(ofNode index: Int) throws -> Int32 {
        let text = try String(contentsOfFile: "\(directory)/run/node\(index).pid", encoding: .utf8)
        guard let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)) else { throw TestSupportError("bad pid file") }
        return pid
    }

    /// SIGKILLs `node<index>`, like a crash.
    public func kill(node index: Int) throws {
        _ = Glibc.kill(try pid(ofNode: index), SIGKILL)
    }

    /// Runs `channels-ctl` against this cluster's Redis.
    public func ctl(_ arguments: String...) async throws -> (status: Int32, output: String) {
        try await run(try builtProduct("channels-ctl"), arguments + ["--redis", redisURL], environment: [:])
    }
}

/// Runs a program to completion and returns its exit status and its output (stdout and stderr together).
///
/// Uses `posix_spawn` and `waitpid` rather than Foundation's `Process`, whose `isRunning` on Linux stays true
/// while any background child of the program (a server a script started) lives on.
public func run(_ executable: String, _ arguments: [String], environment: [String: String]) async throws -> (status: Int32, output: String) {
    let output = FileManager.default.temporaryDirectory.appendingPathComponent("run-\(UUID().uuidString).log").path
    var env = ProcessInfo.processInfo.environment
    for (key, value) in environment { env[key] = value }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    posix_spawn_file_actions_adddup2(&actions, 1, 2)
    let argv = ([executable] + arguments).map { strdup($0) } + [nil]
    let envp = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer {
        for pointer in argv { free(pointer) }
        for pointer in envp { free(pointer) }
    }
    var pid: pid_t = 0
    let spawned = ChildProcesses.launch {
        // Only 0, 1 and 2: a server the program leaves running must not hold this process's sockets or pipes.
        for descriptor in ChildProcesses.openDescriptors() where descriptor > 2 {
            posix_spawn_file_actions_addclose(&actions, descriptor)
        }
        return posix_spawn(&pid, executable, &actions, nil, argv, envp)
    }
    guard spawned == 0 else { throw TestSupportError("could not start \(executable): errno \(spawned)") }
    let child = pid
    let status: Int32 = await withCheckedContinuation { continuation in
        // waitpid blocks: a thread of its own, never the cooperative pool.
        Thread.detachNewThread {
            var raw: Int32 = 0
            while waitpid(child, &raw, 0) == -1 && errno == EINTR {}
            let exited = raw & 0x7f == 0
            continuation.resume(returning: exited ? (raw >> 8) & 0xff : 128 + (raw & 0x7f))
        }
    }
    let text = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
    try? FileManager.default.removeItem(atPath: output)
    return (status, text)
}
