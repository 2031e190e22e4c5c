import Foundation

/// How the test support starts and stops child processes.
///
/// Every start goes through ``launch(_:)`` one at a time. Foundation's `Process.run()` on Linux hands each
/// child the write end of a socket pair whose end of file tells Foundation the child exited, and closes the
/// parent's other descriptors in the child only up to the highest one open when it looked. Two starts at once
/// (three nodes started from a task group) can hand one child the other's socket end: that child's exit then
/// goes unnoticed until the other one exits too, and a `waitUntilExit()` in a `deinit` that runs first waits
/// forever. CI hung 80 minutes on exactly that. Stops wait on `/proc`, bounded, never on `waitUntilExit()`.
public enum ChildProcesses {
    private static let launching = NSLock()

    /// Runs `body` (which creates pipes and calls `run()`) while no other child is being started.
    public static func launch<T>(_ body: () throws -> T) rethrows -> T {
        launching.lock()
        defer { launching.unlock() }
        return try body()
    }

    /// The descriptors open in this process now.
    public static func openDescriptors() -> [Int32] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        return names.compactMap { Int32($0) }
    }

    /// Whether `pid` has exited (a zombie not reaped yet counts) or is gone.
    ///
    /// Reads `/proc` rather than reaping, so that Foundation's own `waitpid` stays the one that reaps.
    public static func hasExited(_ pid: pid_t) -> Bool {
        guard pid > 0, let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let end = stat.lastIndex(of: ")")
        else { return true }
        let state = stat[stat.index(after: end)...].first { $0 != " " }
        return state == "Z" || state == "X"
    }

    /// Sends `signal` to `pid` and waits up to `timeout` for it to exit; whether it did.
    @discardableResult
    public static func signalAndWait(_ pid: pid_t, _ signal: Int32, timeout: Duration = .seconds(10)) -> Bool {
        guard pid > 0, !hasExited(pid) else { return true }
        _ = Glibc.kill(pid, SIGCONT)
        _ = Glibc.kill(pid, signal)
        return waitForExit(pid, timeout: timeout)
    }

    /// Waits up to `timeout` for `pid` to exit; whether it did.
    @discardableResult
    public static func waitForExit(_ pid: pid_t, timeout: Duration) -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if hasExited(pid) { return true }
            usleep(5_000)
        }
        return hasExited(pid)
    }

    /// Waits up to `timeout` until Foundation has seen `process` end (its `terminationStatus` is then valid);
    /// whether it did.
    @discardableResult
    public static func waitUntilNotRunning(_ process: Process, timeout: Duration) -> Bool {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning && ContinuousClock.now < deadline { usleep(5_000) }
        return !process.isRunning
    }
}
