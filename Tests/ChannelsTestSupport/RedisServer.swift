import Foundation
import HiredisClient
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A real `redis-server` on a free loopback port, with no persistence, for tests.
///
/// Every Redis test starts its servers through this type. The server also listens on a Unix socket in
/// its own temporary folder. ``stop()`` ends it; ``kill()`` and ``restart()`` simulate a crash and a
/// recovery on the same port; ``pause()`` freezes it (SIGSTOP) to provoke timeouts.
public final class RedisServer: Sendable {
    /// The TCP port on 127.0.0.1.
    public let port: Int
    /// The password set with `requirepass`, if any.
    public let password: String?
    /// The folder holding the socket and the log.
    public let directory: URL
    private let extraArguments: [String]
    private let configFile: String?
    private let process = Mutex<Process?>(nil)

    /// `redis://[:password@]127.0.0.1:port`.
    public var url: String {
        if let password { return "redis://:\(password)@127.0.0.1:\(port)" }
        return "redis://127.0.0.1:\(port)"
    }

    /// The Unix socket path.
    public var socketPath: String { directory.appendingPathComponent("redis.sock").path }

    /// A configuration for this server with short timeouts suited to tests.
    public func configuration(
        commandTimeout: Duration? = .seconds(10),
        connectTimeout: Duration = .seconds(5)
    ) -> RedisConfiguration {
        var configuration = (try? RedisConfiguration(url: url)) ?? RedisConfiguration()
        configuration.commandTimeout = commandTimeout
        configuration.connectTimeout = connectTimeout
        return configuration
    }

    private init(port: Int, password: String?, directory: URL, extraArguments: [String], configFile: String?) {
        self.port = port
        self.password = password
        self.directory = directory
        self.extraArguments = extraArguments
        self.configFile = configFile
    }

    /// Starts a server and waits until it answers.
    /// - Parameters:
    ///   - password: sets `requirepass`.
    ///   - arguments: more `redis-server` options, e.g. `["--maxclients", "100"]`.
    ///   - configFile: a config file put before the options (a sentinel needs one it can rewrite).
    public static func start(password: String? = nil, arguments: [String] = [], configFile: String? = nil) async throws -> RedisServer {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("swift-channels-redis-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var lastError: (any Error)?
        for _ in 0..<5 {
            let server = RedisServer(
                port: try freePort(), password: password, directory: directory, extraArguments: arguments, configFile: configFile
            )
            do {
                try await server.launch()
                return server
            } catch {
                lastError = error
                server.kill()
            }
        }
        throw lastError ?? TestSupportError("could not start redis-server")
    }

    /// Starts a server on a given port (a Redis Cluster node, whose bus port is this one + 10000).
    public static func start(port: Int, arguments: [String]) async throws -> RedisServer {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("swift-channels-redis-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let server = RedisServer(port: port, password: nil, directory: directory, extraArguments: arguments, configFile: nil)
        try await server.launch()
        return server
    }

    /// Starts the server again on the same port after ``kill()`` or ``stop()``.
    public func restart() async throws {
        try await launch()
    }

    /// Ends the server at once (SIGKILL), like a crash.
    public func kill() {
        signalAndWait(SIGKILL)
    }

    /// Ends the server with SIGTERM (SIGKILL if it is still there after 2 s).
    public func stop() {
        signalAndWait(SIGTERM)
    }

    /// Freezes the server (SIGSTOP): connections stay open but nothing is answered.
    public func pause() {
        process.withLock { process in if let pid = process?.processIdentifier { _ = Glibc.kill(pid, SIGSTOP) } }
    }

    /// Unfreezes a paused server (SIGCONT).
    public func resume() {
        process.withLock { process in if let pid = process?.processIdentifier { _ = Glibc.kill(pid, SIGCONT) } }
    }

    deinit {
        signalAndWait(SIGKILL)
        try? FileManager.default.removeItem(at: directory)
    }

    private func signalAndWait(_ signal: Int32) {
        let running = process.withLock { process in
            defer { process = nil }
            return process
        }
        guard let running else { return }
        // Bounded: 2 s for the signal, then SIGKILL (a child started from a dispatch thread may inherit a mask
        // that blocks SIGTERM).
        let pid = running.processIdentifier
        if !ChildProcesses.signalAndWait(pid, signal, timeout: .seconds(2)) {
            ChildProcesses.signalAndWait(pid, SIGKILL)
        }
    }

    private func launch() async throws {
        let executable = try Self.findExecutable("redis-server")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        var arguments = [
            "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--unixsocket", socketPath, "--unixsocketperm", "700", "--dir", directory.path,
            "--logfile", directory.appendingPathComponent("redis.log").path, "--daemonize", "no",
        ]
        if let password { arguments += ["--requirepass", password] }
        process.arguments = (configFile.map { [$0] } ?? []) + arguments + extraArguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try ChildProcesses.launch { try process.run() }
        self.process.withLock { $0 = process }

        var configuration = self.configuration(commandTimeout: .seconds(1), connectTimeout: .seconds(1))
        configuration.address = .tcp(host: "127.0.0.1", port: port)
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            guard process.isRunning else {
                throw TestSupportError("redis-server exited at start (port \(port) taken?); see \(directory.path)/redis.log")
            }
            if let connection = try? await RedisConnection.connect(configuration: configuration) {
                await connection.close()
                return
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw TestSupportError("redis-server on port \(port) did not answer within 10 s")
    }

    static func findExecutable(_ name: String) throws -> String {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for directory in path.split(separator: ":") + ["/usr/sbin", "/usr/bin"] {
            let candidate = "\(directory)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        throw TestSupportError("\(name) not found on PATH: install it (apt-get install -y redis-server) or run .ci/run")
    }
}

/// A port on 127.0.0.1 that nothing listened on a moment ago.
public func freePort() throws -> Int {
    let (fd, port) = try bindLoopback(port: 0)
    close(fd)
    return port
}

/// The first of `count` consecutive loopback ports that are all free now, for programs that take a base port
/// (`scripts/cluster`). Chosen below the kernel's ephemeral range, where client sockets of earlier tests
/// (thousands, some in TIME_WAIT) would otherwise sit next to a port the kernel called free; or, with
/// `startingAt`, checks that run only.
public func freeConsecutivePorts(_ count: Int, startingAt fixed: Int? = nil) throws -> Int {
    let range = (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8))?
        .split(whereSeparator: \.isWhitespace).compactMap { Int($0) } ?? []
    let ephemeralLow = range.first ?? 32768
    for _ in 0..<(fixed == nil ? 200 : 1) {
        let base = fixed ?? Int.random(in: 10_000...(ephemeralLow - count - 1))
        var held: [Int32] = []
        defer { for fd in held { close(fd) } }
        for port in base..<base + count {
            guard let (fd, _) = try? bindLoopback(port: port) else { break }
            held.append(fd)
        }
        if held.count == count { return base }
    }
    throw TestSupportError("no \(count) consecutive free loopback ports below \(ephemeralLow)")
}

/// A TCP socket bound to 127.0.0.1:`port` (0: any free port) and the port it got.
private func bindLoopback(port: Int) throws -> (Int32, Int) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw TestSupportError("socket() failed: errno \(errno)") }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = UInt16(port).bigEndian
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard bound == 0 else {
        let code = errno
        close(fd)
        throw TestSupportError("bind() to port \(port) failed: errno \(code)")
    }
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let named = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    guard named == 0 else {
        close(fd)
        throw TestSupportError("getsockname() failed: errno \(errno)")
    }
    return (fd, Int(UInt16(bigEndian: address.sin_port)))
}

/// A failure of the test harness itself (not of the code under test).
public struct TestSupportError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Polls `condition` until it holds or `timeout` passes; returns whether it held.
public func eventually(
    timeout: Duration = .seconds(10),
    every interval: Duration = .milliseconds(20),
    _ condition: () async throws -> Bool
) async rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: interval)
    }
    return try await condition()
}
