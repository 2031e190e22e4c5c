import ArgumentParser
import ChannelLayers
import ChannelLayersRedis
import ChannelsProtocol
import Foundation
import Synchronization

/// groupSend through a Redis layer (pub/sub or core) to one group whose members live in two processes.
struct LayerFanoutCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "layer-fanout",
        abstract: "groupSend throughput of the Redis layer to a group spread over two processes.",
        discussion: """
            Starts a second process (channels-bench layer-members) that holds half of the members, holds the \
            other half itself, then sends --messages group messages with --window sends in flight and waits \
            until every member in both processes has received every message.
            """
    )

    @Option(name: .customLong("redis"), help: "Redis URL (repeat for shards).")
    var urls: [String] = ["redis://127.0.0.1:6379"]

    @Option(help: "pubsub or core (channels_redis' RedisChannelLayer).")
    var layer = "pubsub"

    @Option(name: .customLong("redis-cluster"), help: "A Redis Cluster seed HOST:PORT (repeat), instead of --redis: sharded pub/sub.")
    var clusterSeeds: [String] = []

    @Option(help: "Members of the group in each of the two processes.")
    var membersPerProcess = 50

    @Option(help: "Group messages to send.")
    var messages = 20_000

    @Option(help: "groupSend calls in flight at once.")
    var window = 64

    @Option(help: "Bytes of text in each message.")
    var payload = 64

    @Option(help: "Queue capacity of each member channel.")
    var capacity = 1000

    @Flag(help: "Print one JSON object instead of text.")
    var json = false

    func run() async throws {
        let group = "bench_\(UInt32.random(in: 0...UInt32.max))"
        let child = Process()
        child.executableURL = URL(fileURLWithPath: CommandLine.arguments[0]).absoluteURL
        child.arguments =
            ["layer-members", "--group", group, "--members", String(membersPerProcess), "--expect", String(messages),
             "--capacity", String(capacity), "--layer", layer] + urls.flatMap { ["--redis", $0] } + clusterSeeds.flatMap { ["--redis-cluster", $0] }
        let output = Pipe()
        child.standardOutput = output
        try child.run()
        let lines = LineReader(output.fileHandleForReading)
        guard await lines.nextLine() == "READY" else { throw ValidationError("the member process did not start") }

        let (layer, runner, channels) = try await joinedMembers(
            layer: self.layer, urls: urls, clusterSeeds: clusterSeeds, capacity: capacity, group: group, count: membersPerProcess
        )
        defer { runner.cancel() }
        let members = MemberReceivers(layer: layer, channels: channels, expectedPerMember: messages)
        let message: Message = ["type": "bench.message", "text": .string(String(repeating: "x", count: payload))]
        let started = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            for lane in 0..<window {
                tasks.addTask {
                    var index = lane
                    while index < messages {
                        try await layer.groupSend(message, to: group)
                        index += window
                    }
                }
            }
            try await tasks.waitForAll()
        }
        let sent = ContinuousClock.now - started
        let localResult = await members.finish()
        let remote = await lines.nextLine() ?? ""
        let elapsed = ContinuousClock.now - started
        child.waitUntilExit()
        guard remote.hasPrefix("DONE "), let remoteDeliveries = Int(remote.split(separator: " ")[1]) else {
            throw ValidationError("the member process failed: \(remote)")
        }
        let drops = localResult.dropped + (Int(remote.split(separator: " ")[2]) ?? 0)
        let local = localResult.received
        let seconds = elapsed / .seconds(1)
        let messagesPerSecond = Double(messages) / (sent / .seconds(1))
        let deliveriesPerSecond = Double(local + remoteDeliveries) / seconds
        if json {
            print(
                #"{"layer":"\#(self.layer)","members":\#(2 * membersPerProcess),"messages":\#(messages),"window":\#(window),"payload":\#(payload),"messages_per_second":\#(Int(messagesPerSecond)),"deliveries_per_second":\#(Int(deliveriesPerSecond)),"deliveries":\#(local + remoteDeliveries),"dropped":\#(drops),"seconds":\#(seconds)}"#
            )
        } else {
            print("\(self.layer) layer: group of \(2 * membersPerProcess) members over 2 processes, \(messages) groupSends (window \(window), \(payload)-byte text)")
            print("  groupSend:  \(Int(messagesPerSecond)) messages/s (all sent after \(String(format: "%.2f", sent / .seconds(1))) s)")
            print("  delivered:  \(local + remoteDeliveries) of \(2 * membersPerProcess * messages) in \(String(format: "%.2f", seconds)) s = \(Int(deliveriesPerSecond)) deliveries/s, \(drops) dropped")
        }
    }
}

/// The member half of layer-fanout: holds members, reports when each has every message.
struct LayerMembersCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "layer-members",
        abstract: "Internal: the second process of layer-fanout.",
        shouldDisplay: false
    )

    @Option(name: .customLong("redis")) var urls: [String]
    @Option var group: String
    @Option var members: Int
    @Option var expect: Int
    @Option var capacity: Int
    @Option var layer: String
    @Option(name: .customLong("redis-cluster")) var clusterSeeds: [String] = []

    func run() async throws {
        let (layer, runner, channels) = try await joinedMembers(layer: self.layer, urls: urls, clusterSeeds: clusterSeeds, capacity: capacity, group: group, count: members)
        defer { runner.cancel() }
        let members = MemberReceivers(layer: layer, channels: channels, expectedPerMember: expect)
        emitLine("READY")
        let result = await members.finish()
        emitLine("DONE \(result.received) \(result.dropped)")
    }
}

/// A running Redis layer (no registry) with `count` new channels in `group`.
func joinedMembers(
    layer kind: String, urls: [String], clusterSeeds: [String], capacity: Int, group: String, count: Int
) async throws -> (any ChannelLayer, Task<Void, any Error>, [String]) {
    var settings = RedisLayerSettings(kind: try RedisLayerSettings.kind(named: kind), urls: urls)
    settings.clusterSeeds = clusterSeeds
    settings.capacity = capacity
    settings.registry = false
    let runnable = try settings.makeLayer()
    let layer = runnable.layer
    let runner = Task { try await runnable.run() }
    var channels: [String] = []
    for _ in 0..<count {
        let channel = try await layer.newChannel()
        try await layer.groupAdd(group, channel: channel)
        channels.append(channel)
    }
    return (layer, runner, channels)
}

/// Receives on every member channel until each message was either received or dropped at a full queue.
final class MemberReceivers: Sendable {
    private let layer: any ChannelLayer
    private let expected: Int
    private let tasks: [Task<Void, Never>]

    init(layer: any ChannelLayer, channels: [String], expectedPerMember: Int) {
        self.layer = layer
        self.expected = channels.count * expectedPerMember
        let received = Counter()
        self.counter = received
        self.tasks = channels.map { channel in
            Task {
                while (try? await layer.receive(from: channel)) != nil { received.add(1) }
            }
        }
    }

    private let counter: Counter

    /// Waits until all messages are accounted for, or nothing moved for 10 s; stops the receivers.
    func finish() async -> (received: Int, dropped: Int) {
        var last = -1
        var stalledSince = ContinuousClock.now
        while true {
            let done = counter.value
            let dropped = layer.statistics.dropped
            if done + dropped >= expected { break }
            if done != last {
                last = done
                stalledSince = .now
            } else if ContinuousClock.now - stalledSince > .seconds(10) {
                break
            }
            try? await Task.sleep(for: .milliseconds(5))
        }
        for task in tasks { task.cancel() }
        return (counter.value, layer.statistics.dropped)
    }
}

final class Counter: Sendable {
    private let count = Mutex(0)
    func add(_ value: Int) { count.withLock { $0 += value } }
    var value: Int { count.withLock { $0 } }
}

/// Writes a line to standard output at once (a parent process waits for it).
func emitLine(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

/// Reads lines from a pipe on a Dispatch thread, never on the cooperative pool.
/// Unchecked: `next()` runs on one serial queue only.
final class LineReader: @unchecked Sendable {
    private let queue = DispatchQueue(label: "channels-bench.line-reader")

    func nextLine() async -> String? {
        await withCheckedContinuation { continuation in
            queue.async { continuation.resume(returning: self.next()) }
        }
    }

    private let handle: FileHandle
    private var buffer = Data()

    init(_ handle: FileHandle) { self.handle = handle }

    func next() -> String? {
        while true {
            if let newline = buffer.firstIndex(of: 0x0a) {
                let line = String(decoding: buffer[buffer.startIndex..<newline], as: UTF8.self)
                buffer.removeSubrange(buffer.startIndex...newline)
                return line
            }
            let data = handle.availableData
            if data.isEmpty { return nil }
            buffer.append(data)
        }
    }
}
