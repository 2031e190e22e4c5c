import Foundation
import Synchronization

/// A Python process from the interop venv (`scripts/setup-interop`), with its output read line by line.
///
/// The venv's python is `$CHANNELS_INTEROP_PYTHON`, or `.build/interop-venv/bin/python` under the package.
public final class PythonProcess: Sendable {
    private let process: Mutex<Process>
    private let lines: AsyncStream<String>
    private let errors = TextBuffer()

    /// The interpreter of the interop venv.
    public static func interpreter(packageRoot: URL) throws -> String {
        if let path = ProcessInfo.processInfo.environment["CHANNELS_INTEROP_PYTHON"] { return path }
        let path = packageRoot.appendingPathComponent(".build/interop-venv/bin/python").path
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw TestSupportError("no interop venv at \(path): run scripts/setup-interop (scripts/test does)")
        }
        return path
    }

    /// Starts `python script arguments...`, with `environment` added to this process's.
    public init(python: String, script: String, arguments: [String], environment: [String: String] = [:]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [script] + arguments
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        // The pipes are made while no other child starts, so that only this one holds their write ends.
        let (output, errorOutput) = try ChildProcesses.launch {
            let output = Pipe()
            let errorOutput = Pipe()
            process.standardOutput = output
            process.standardError = errorOutput
            try process.run()
            return (output, errorOutput)
        }
        let (lines, continuation) = AsyncStream.makeStream(of: String.self)
        self.lines = lines
        // Blocking reads on threads of their own that hold the pipes until end of file. (FileHandle's
        // readabilityHandler lets the descriptor close under a live dispatch source when the process object
        // goes away first, which crashed libdispatch's event loop.)
        let outputHandle = output.fileHandleForReading
        let errorHandle = errorOutput.fileHandleForReading
        let errors = self.errors
        Thread.detachNewThread {
            var buffer = Data()
            while true {
                let data = outputHandle.availableData
                if data.isEmpty { break }
                buffer.append(data)
                while let newline = buffer.firstIndex(of: 0x0a) {
                    continuation.yield(String(decoding: buffer[buffer.startIndex..<newline], as: UTF8.self))
                    buffer.removeSubrange(buffer.startIndex...newline)
                }
            }
            continuation.finish()
        }
        Thread.detachNewThread {
            while true {
                let data = errorHandle.availableData
                if data.isEmpty { break }
                errors.text.withLock { $0 += String(decoding: data, as: UTF8.self) }
            }
            errors.ended.withLock { $0 = true }
        }
        self.process = Mutex(process)
    }

    /// The next line the process printed, or an error with its stderr when it ends first or `timeout` passes.
    public func nextLine(timeout: Duration = .seconds(30)) async throws -> String {
        let lines = self.lines
        return try await withThrowingTaskGroup(of: String?.self) { group in
            group.addTask {
                var iterator = lines.makeAsyncIterator()
                return await iterator.next()
            }
            group.addTask {
                try await Task.sleep(for: timeout)
                return nil
            }
            defer { group.cancelAll() }
            let started = ContinuousClock.now
            if let line = try await group.next() ?? nil { return line }
            let waited = ContinuousClock.now - started
            // Standard output ends before the reader of standard error has taken all of it: wait for that
            // reader, so that a traceback is not missing from the error.
            let ended = await eventually(timeout: .seconds(3), every: .milliseconds(10)) { errors.ended.withLock { $0 } }
            let running = process.withLock { $0.isRunning }
            let state = running ? "still running" : "exited with status \(process.withLock { $0.terminationStatus })"
            throw TestSupportError(
                "python printed no line after \(waited) (timeout \(timeout)); it \(state); \(ended ? "" : "partial ")stderr:\n\(errors.text.withLock { $0 })"
            )
        }
    }

    /// Waits for the process to end and returns its exit status, or `nil` if it still runs after `timeout`.
    public func wait(timeout: Duration = .seconds(60)) async -> Int32? {
        let deadline = ContinuousClock.now + timeout
        while process.withLock({ $0.isRunning }) {
            guard ContinuousClock.now < deadline else { return nil }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return process.withLock { $0.terminationStatus }
    }

    /// What the process wrote to stderr so far.
    public var standardError: String { errors.text.withLock { $0 } }

    /// The process id (the leader of its process group).
    public var processIdentifier: Int32 { process.withLock { $0.processIdentifier } }

    /// SIGKILLs the process and what it started, like a crash.
    public func kill() {
        let pid = processIdentifier
        guard pid > 0 else { return }
        _ = Glibc.kill(-pid, SIGKILL)
        ChildProcesses.waitForExit(pid, timeout: .seconds(5))
    }

    /// Sends SIGTERM to the process and what it started (Foundation starts each child in a process group of its
    /// own: a script's server goes too).
    public func terminate() {
        let pid = process.withLock { $0.processIdentifier }
        if pid > 0 { _ = Glibc.kill(-pid, SIGTERM) }
    }

    /// Ends the group: SIGTERM, then SIGKILL for whatever did not exit within 3 s (uvicorn waits for its open
    /// WebSockets on SIGTERM), so that no test leaves a server running.
    deinit {
        let pid = process.withLock { $0.processIdentifier }
        guard pid > 0 else { return }
        _ = Glibc.kill(-pid, SIGTERM)
        ChildProcesses.waitForExit(pid, timeout: .seconds(3))
        // Whatever of the group is left: the leader if SIGTERM was not enough, a script's server that outlived it.
        _ = Glibc.kill(-pid, SIGKILL)
    }
}

/// Text gathered from several threads.
public final class TextBuffer: Sendable {
    public let text = Mutex("")
    /// Whether the writer reached the end of its input.
    public let ended = Mutex(false)
    public init() {}
}
