import ArgumentParser
import HiredisClient

/// Pipelined PUBLISH throughput of the client from one connection, to set beside `redis-benchmark`.
struct RedisPublishCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "redis-publish",
        abstract: "PUBLISH throughput of HiredisClient from one connection.",
        discussion: """
            --mode batch sends pipeline batches of --pipeline commands with --window batches in flight, \
            as redis-benchmark -P does. --mode callers runs --callers concurrent tasks that each await one \
            PUBLISH at a time, the way a channel layer's group sends arrive; the connection batches them.
            """
    )

    enum Mode: String, ExpressibleByArgument, CaseIterable {
        case batch, callers
    }

    @Option(name: .customLong("redis"), help: "Redis URL.")
    var url = "redis://127.0.0.1:6379"

    @Option(name: [.short, .long], help: "How many PUBLISH commands in all.")
    var count = 200_000

    @Option(help: "Which way to send: batch or callers.")
    var mode: Mode = .batch

    @Option(name: [.customShort("P"), .long], help: "Commands per pipeline batch (batch mode).")
    var pipeline = 32

    @Option(help: "Batches in flight at once (batch mode).")
    var window = 50

    @Option(help: "Concurrent callers (callers mode).")
    var callers = 256

    @Option(help: "The channel to publish to.")
    var channel = "ch"

    @Option(help: "The payload to publish.")
    var payload = "payload"

    @Option(help: "Runs to make; the best is reported, as the machine is shared with Redis.")
    var runs = 3

    @Flag(help: "Print one JSON object instead of text.")
    var json = false

    func validate() throws {
        guard count > 0, pipeline > 0, window > 0, callers > 0, runs > 0 else {
            throw ValidationError("--count, --pipeline, --window, --callers and --runs must be positive")
        }
    }

    func run() async throws {
        let configuration: RedisConfiguration
        let connection: RedisConnection
        do {
            configuration = try RedisConfiguration(url: url)
            connection = try await RedisConnection.connect(configuration: configuration)
        } catch {
            // Not a usage error: one line and exit 1, as channels-node and channels-ctl do.
            throw BenchFailure(description: error.message)
        }
        let command = RedisCommand("PUBLISH", .string(channel), .string(payload))
        var best = 0.0
        for _ in 0..<runs {
            let started = ContinuousClock.now
            switch mode {
            case .batch: try await runBatches(connection, command)
            case .callers: try await runCallers(connection, command)
            }
            let elapsed = ContinuousClock.now - started
            best = max(best, Double(count) / (elapsed / .seconds(1)))
        }
        await connection.close()
        let rate = Int(best.rounded())
        if json {
            print(#"{"mode":"\#(mode.rawValue)","count":\#(count),"pipeline":\#(pipeline),"window":\#(window),"callers":\#(callers),"runs":\#(runs),"publishes_per_second":\#(rate)}"#)
        } else {
            let shape = mode == .batch ? "pipeline \(pipeline) x window \(window)" : "\(callers) concurrent callers"
            print("HiredisClient PUBLISH, one connection, \(mode.rawValue) (\(shape)), \(count) commands, best of \(runs): \(rate) requests per second")
        }
    }

    private func runBatches(_ connection: RedisConnection, _ command: RedisCommand) async throws {
        let batches = (count + pipeline - 1) / pipeline
        try await withThrowingTaskGroup(of: Void.self) { group in
            for lane in 0..<min(window, batches) {
                group.addTask {
                    var batch = lane
                    while batch < batches {
                        let size = min(pipeline, count - batch * pipeline)
                        _ = try await connection.pipeline(Array(repeating: command, count: size))
                        batch += window
                    }
                }
            }
            try await group.waitForAll()
        }
    }

    private func runCallers(_ connection: RedisConnection, _ command: RedisCommand) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for caller in 0..<min(callers, count) {
                group.addTask {
                    var sent = caller
                    while sent < count {
                        try await connection.send(command)
                        sent += callers
                    }
                }
            }
            try await group.waitForAll()
        }
    }
}
