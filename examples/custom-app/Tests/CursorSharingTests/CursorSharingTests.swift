import ChannelsWebSocketClient
import CursorSharing
import Foundation
import Synchronization
import Testing

/// Two `cursor-node` processes on a real `redis-server`: a cursor moved on one node reaches the board's
/// members on both, as 12-byte binary frames, and bad frames are refused.
@Suite(.serialized) struct CursorSharingTests {
    @Test func cursorsCrossNodesAsBinaryFrames() async throws {
        let (redis, nodes) = try await startNodes()
        // SIGKILL: a child started from a dispatch thread inherits its blocked SIGTERM (Foundation keeps the mask).
        defer { kill(redis.processIdentifier, SIGKILL) }
        defer { for node in nodes { node.process.terminate() } }

        let seen = [Inbox(), Inbox(), Inbox()]
        var clients: [WebSocketClient] = []
        for (index, inbox) in seen.enumerated() {
            clients.append(
                try await WebSocketClient.connect(
                    host: "127.0.0.1", port: nodes[index % 2].port, path: "/ws/cursors/demo/", onMessage: { inbox.add($0) }
                )
            )
        }
        // Joined on every node before the first move.
        try await Task.sleep(for: .milliseconds(300))
        clients[0].send(binary: [0x01, 0x02, 0x03, 0x04])
        for inbox in seen[1...] {
            #expect(await inbox.waitFor { $0.contains { if case .binary(let bytes) = $0 { bytes.count == 12 && bytes.suffix(4) == [1, 2, 3, 4] } else { false } } })
        }
        // The mover does not get its own cursor back; both others got the same sender id.
        try await Task.sleep(for: .milliseconds(200))
        #expect(seen[0].messages.isEmpty)
        let ids = seen[1...].compactMap { inbox -> [UInt8]? in
            if case .binary(let bytes)? = inbox.messages.first { return Array(bytes.prefix(8)) }
            return nil
        }
        #expect(ids.count == 2 && ids[0] == ids[1])

        // Bad input is refused with a reason and loses nothing else.
        clients[1].send(binary: [0x01])
        clients[1].send(text: "hello")
        #expect(await seen[1].waitFor { $0.filter { if case .text(let text) = $0 { text.contains("invalid_frame") } else { false } }.count == 2 })
        for client in clients { await client.close() }
    }

    /// permessage-deflate with binary frames both ways across nodes: with `--compression-min-size 1` even a cursor's
    /// few bytes go compressed, from the client (RSV1 set, inflated by the node) and to the clients that agreed;
    /// a client that did not offer the extension gets the same bytes plain.
    @Test func binaryFramesCrossNodesCompressedBothWays() async throws {
        let (redis, nodes) = try await startNodes(["--compression-min-size", "1"])
        defer { kill(redis.processIdentifier, SIGKILL) }
        defer { for node in nodes { node.process.terminate() } }

        let seen = [Inbox(), Inbox(), Inbox()]
        var clients: [WebSocketClient] = []
        for (index, inbox) in seen.enumerated() {
            clients.append(
                try await WebSocketClient.connect(
                    host: "127.0.0.1", port: nodes[index % 2].port, path: "/ws/cursors/zip/", compression: index < 2, onMessage: { inbox.add($0) }
                )
            )
        }
        #expect(clients[0].isCompressed && clients[1].isCompressed && !clients[2].isCompressed)
        try await Task.sleep(for: .milliseconds(300))
        // Sent compressed from node 0's client; node 1's compressed client and node 0's plain one both get it.
        clients[0].send(binary: [0x00, 0x10, 0x00, 0x20])
        clients[1].send(binary: [0x00, 0x30, 0x00, 0x40])
        for (index, inbox) in seen.enumerated() {
            let expected: [[UInt8]] = [[0x00, 0x10, 0x00, 0x20], [0x00, 0x30, 0x00, 0x40]].enumerated().filter { $0.offset != index }.map(\.element)
            #expect(
                await inbox.waitFor { messages in
                    expected.allSatisfy { cursor in messages.contains { if case .binary(let bytes) = $0 { bytes.count == 12 && Array(bytes.suffix(4)) == cursor } else { false } } }
                },
                "client \(index): \(inbox.messages)"
            )
        }
        #expect(clients[0].compressedMessagesReceived == 1 && clients[1].compressedMessagesReceived == 1)
        #expect(clients[2].compressedMessagesReceived == 0)

        // Python's `websockets` (scripts/test's interop venv) on node 1, compressing every frame it sends: its
        // cursor reaches the Swift clients, and a cursor from node 0 reaches it, inflated.
        if let python = ProcessInfo.processInfo.environment["CHANNELS_INTEROP_PYTHON"] {
            let output = NSTemporaryDirectory() + "cursor-python-\(UUID().uuidString)"
            let script = """
                import asyncio, sys, websockets
                async def main():
                    async with websockets.connect("ws://127.0.0.1:\(nodes[1].port)/ws/cursors/zip/", compression="deflate") as ws:
                        assert [e.name for e in ws.protocol.extensions] == ["permessage-deflate"], ws.protocol.extensions
                        print("ready", flush=True)
                        await ws.send(bytes([0, 0x50, 0, 0x60]))
                        got = await asyncio.wait_for(ws.recv(), 10)
                        print(got.hex(), flush=True)
                asyncio.run(main())
                """
            let process = Process()
            process.executableURL = URL(fileURLWithPath: python)
            process.arguments = ["-c", script]
            FileManager.default.createFile(atPath: output, contents: nil)
            process.standardOutput = FileHandle(forWritingAtPath: output)
            process.standardError = process.standardOutput
            try process.run()
            defer { process.terminate() }
            let lines = { (try? String(contentsOfFile: output, encoding: .utf8))?.split(separator: "\n").map(String.init) ?? [] }
            for _ in 0..<500 where !lines().contains("ready") { try await Task.sleep(for: .milliseconds(10)) }
            #expect(lines().first == "ready", "\(lines())")
            try await Task.sleep(for: .milliseconds(200))
            clients[0].send(binary: [0x00, 0x70, 0x00, 0x80])
            for _ in 0..<500 where lines().count < 2 { try await Task.sleep(for: .milliseconds(10)) }
            #expect(lines().count == 2 && lines().last?.count == 24 && lines().last?.hasSuffix("00700080") == true, "\(lines())")
            for (index, inbox) in seen.enumerated() {
                #expect(
                    await inbox.waitFor { $0.contains { if case .binary(let bytes) = $0 { Array(bytes.suffix(4)) == [0x00, 0x50, 0x00, 0x60] } else { false } } },
                    "client \(index) did not get the Python client's cursor"
                )
            }
        }
        for client in clients { await client.close() }
    }

    @Test func idsAreStableAndShort() {
        #expect(CursorConsumer.id(of: "asgispecific.abc").count == 8)
        #expect(CursorConsumer.id(of: "asgispecific.abc") == CursorConsumer.id(of: "asgispecific.abc"))
        #expect(CursorConsumer.id(of: "asgispecific.abc") != CursorConsumer.id(of: "asgispecific.abd"))
    }

    // MARK: - Processes

    /// A `redis-server` and two `cursor-node` processes on it, ready; `arguments` go to both nodes.
    func startNodes(_ arguments: [String] = []) async throws -> (redis: Process, nodes: [(process: Process, port: Int)]) {
        let redisPort = try freePort()
        let redis = try launch("redis-server", ["--port", String(redisPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        try await waitForPort(redisPort)
        var nodes: [(process: Process, port: Int)] = []
        for index in 0..<2 {
            let port = try freePort()
            let node = try launch(
                Self.product("cursor-node"),
                ["--port", String(port), "--node-id", "cursor-\(index)", "--redis", "redis://127.0.0.1:\(redisPort)", "--log-level", "warning"] + arguments
            )
            nodes.append((node, port))
        }
        for node in nodes { try await waitForReady(node.port) }
        return (redis, nodes)
    }

    final class Inbox: Sendable {
        private let received = Mutex<[WebSocketClient.Message]>([])
        func add(_ message: WebSocketClient.Message) { received.withLock { $0.append(message) } }
        var messages: [WebSocketClient.Message] { received.withLock { $0 } }
        func waitFor(_ condition: ([WebSocketClient.Message]) -> Bool) async -> Bool {
            for _ in 0..<500 {
                if condition(messages) { return true }
                try? await Task.sleep(for: .milliseconds(10))
            }
            return condition(messages)
        }
    }

    /// A product of this package's build, beside the test bundle.
    static func product(_ name: String) -> String {
        var directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        while directory.path != "/" {
            let candidate = directory.appendingPathComponent(name).path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            directory = directory.deletingLastPathComponent()
        }
        return URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent(".build/debug/\(name)").path
    }

    func launch(_ executable: String, _ arguments: [String]) throws -> Process {
        let process = Process()
        let path = executable.hasPrefix("/") ? executable : "/usr/bin/\(executable)"
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        // Not the test's own output: `swift test` reads it to its end, which a child still draining holds open.
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        return process
    }

    /// A free port below the kernel's ephemeral range: a client socket connecting to a port inside that
    /// range can be given that very port as its own and connect to itself before the server binds it.
    func freePort() throws -> Int {
        for _ in 0..<100 {
            let port = Int.random(in: 20_000..<32_000)
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(fd) }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = UInt16(port).bigEndian
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
            }
            if bound { return port }
        }
        throw CocoaError(.fileNoSuchFile)
    }

    func waitForPort(_ port: Int) async throws {
        for _ in 0..<200 {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = UInt16(port).bigEndian
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
            }
            close(fd)
            if connected { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        Issue.record("nothing listens on port \(port)")
    }

    /// The node answers on its port (it binds once its layer is set up).
    func waitForReady(_ port: Int) async throws {
        try await waitForPort(port)
    }
}
