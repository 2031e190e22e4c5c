import ChannelsTestSupport
import ChannelsWebSocketClient
import Foundation
import Testing

/// A node's memory under clients that stop reading (hardening round three): bounded for the whole node, not only
/// per connection, and given back to the system once the flood is over.
@Suite(.serialized) struct NodeMemoryTests {
    static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Wire/non_readers.py").path

    /// The node's resident memory in bytes, from `/proc/<pid>/status`.
    static func residentBytes(_ node: NodeProcess) -> Int {
        let status = (try? String(contentsOfFile: "/proc/\(node.processIdentifier)/status", encoding: .utf8)) ?? ""
        let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
        return (Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") ?? 0) * 1024
    }

    /// `count` connections to the room that read nothing until `go` exists (see `Wire/non_readers.py`).
    static func nonReaders(_ node: NodeProcess, room: String, count: Int, go: String, seconds: Int) async throws -> PythonProcess {
        let readers = try PythonProcess(python: "/usr/bin/python3", script: script, arguments: [String(node.port), room, String(count), go, String(seconds)])
        let ready = try await readers.nextLine(timeout: .seconds(30))
        guard ready == "ready \(count)" else { throw TestSupportError("non_readers.py said '\(ready)': \(readers.standardError)") }
        return readers
    }

    static func goFile() -> String { NSTemporaryDirectory() + "channels-go-\(UUID().uuidString)" }

    static func counter(_ name: String, _ node: NodeProcess) async throws -> Double {
        NodeFaultTests.counter(name, in: try await node.get("/metrics").body)
    }

    /// With a small node-wide budget, the largest backlogs are closed with 4008 and the budget's reason (each
    /// counted) while a client that reads gets every message.
    @Test func theNodesOutboundBudgetClosesTheLargestBacklogs() async throws {
        // The budget alone, as before publishers waited for readers behind (BackPressureTests covers that).
        let node = try await NodeProcess.start(arguments: ["--max-node-queued-bytes", String(8 * 1024 * 1024), "--slow-reader-grace", "0"])
        let reader = try await ChatClient.connect(port: node.port, room: "budget")
        let sender = try await ChatClient.connect(port: node.port, room: "budget")
        let go = Self.goFile()
        defer { try? FileManager.default.removeItem(atPath: go) }
        let stuck = try await Self.nonReaders(node, room: "budget", count: 4, go: go, seconds: 10)
        let text = String(repeating: "b", count: 8 * 1024)
        let total = 1200
        var budgetCloses = 0.0
        for index in 0..<total {
            sender.say("\(index)-\(text)")
            try await Task.sleep(for: .milliseconds(2))
            // The non-readers read again once the budget closed one: the closed ones then take their close frame.
            if budgetCloses == 0, index % 10 == 0 {
                budgetCloses = try await Self.counter("channels_outbound_budget_closes_total", node)
                if budgetCloses > 0 { _ = FileManager.default.createFile(atPath: go, contents: nil) }
            }
        }
        #expect(budgetCloses > 0, "the node's outbound budget closed nobody")
        _ = FileManager.default.createFile(atPath: go, contents: nil)
        var results: [String] = []
        for _ in 0..<4 { results.append(try await stuck.nextLine(timeout: .seconds(30))) }
        let closed = results.filter { $0.hasPrefix("close 4008 the node's outbound budget (8388608 bytes) is spent") }
        #expect(!closed.isEmpty, "\(results)")
        // Closed by the budget with its reason, or still open: none lost its close frame or got another code.
        #expect(results.allSatisfy { $0 == "open" || closed.contains($0) }, "\(results)")
        #expect(try await Self.counter("channels_outbound_budget_closes_total", node) == Double(closed.count))
        #expect(await reader.waitForFrames(total, timeout: .seconds(30)), "the reader got \(reader.frames.count) of \(total)")
        #expect(reader.frames.count == total && reader.client.isOpen && sender.client.isOpen)
    }

    /// The flood: clients that stop reading while a room is flooded took RSS from 353 to 1,373 MiB, and
    /// it stayed there once they were gone. Baseline: the node's RSS with 40 idle clients after a warm-up; after
    /// a flood that fills each of their 4 MiB buffers and closes them, and 40 idle clients again, RSS comes back
    /// within 20% of it.
    @Test func memoryComesBackAfterAFloodOfClientsThatDoNotRead() async throws {
        let node = try await NodeProcess.start()
        let sender = try await ChatClient.connect(port: node.port, room: "flood")
        let firstGo = Self.goFile()
        let secondGo = Self.goFile()
        defer {
            try? FileManager.default.removeItem(atPath: firstGo)
            try? FileManager.default.removeItem(atPath: secondGo)
        }
        let idle = try await Self.nonReaders(node, room: "flood", count: 40, go: firstGo, seconds: 5)
        for index in 0..<50 { sender.say("warm-up \(index)") }
        #expect(await sender.waitForFrames(50))
        try await Task.sleep(for: .seconds(1))
        let baseline = Self.residentBytes(node)

        let text = String(repeating: "f", count: 1024)
        var peak = baseline
        for index in 0..<6000 {
            sender.say("\(index)-\(text)")
            if index % 100 == 99 {
                try await Task.sleep(for: .milliseconds(5))
                peak = max(peak, Self.residentBytes(node))
            }
        }
        // Every non-reader passes its 4 MiB and is closed; the sender stays.
        #expect(await eventually(timeout: .seconds(30), every: .milliseconds(100)) {
            peak = max(peak, Self.residentBytes(node))
            return (try? await Self.counter("channels_slow_client_closes_total", node)) == 40
        })
        #expect(peak > baseline + 100 * 1024 * 1024, "the flood did not grow the node: \(baseline) -> \(peak) bytes")
        // Publishing slowed while the non-readers were behind (for their grace): the flood is over once the sender
        // has every message back, not before.
        #expect(await sender.waitForFrames(50 + 6000, timeout: .seconds(60)), "\(sender.frames.count) of 6,050")
        _ = FileManager.default.createFile(atPath: firstGo, contents: nil)
        _ = await idle.wait(timeout: .seconds(30))

        let again = try await Self.nonReaders(node, room: "flood", count: 40, go: secondGo, seconds: 1)
        let limit = baseline + baseline / 5
        let back = await eventually(timeout: .seconds(20), every: .milliseconds(250)) { Self.residentBytes(node) <= limit }
        #expect(back, "RSS \(Self.residentBytes(node) / 1024 / 1024) MiB after the flood; baseline \(baseline / 1024 / 1024) MiB, peak \(peak / 1024 / 1024) MiB")
        _ = FileManager.default.createFile(atPath: secondGo, contents: nil)
        _ = await again.wait(timeout: .seconds(30))
        #expect(sender.client.isOpen)
    }
}
