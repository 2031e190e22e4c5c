import ChannelsTestSupport
import ChannelsWebSocketClient
import Foundation
import Testing

/// The HTTP API's edges (issue 21, items 5 to 7) against real nodes: reserved channels refused by the
/// channel routes, request heads decided before any body is read (memory measured on the node), the
/// node-wide budget of bodies in flight, and admin event streams that hold no handshake slot, have a limit
/// of their own and share one snapshot per interval.
@Suite(.serialized) struct APIEdgeTests {
    static let key = "edge-test-api-key-0123456789abcdef"

    static func keyFile() throws -> String { try apiKeyFile([key]) }

    // MARK: - Item 5: reserved channels

    /// The channel routes refuse the layer's group and presence channels (the control group among them):
    /// they would disconnect users, forge presence, or publish into a group behind the group route's back.
    @Test func reservedChannelsAreRefused() async throws {
        let redis = try await RedisServer.start()
        let node = try await NodeProcess.start(redis: [redis.url], arguments: ["--api-key-file", try Self.keyFile()])
        defer { node.terminate() }
        let client = try await ChatClient.connect(port: node.port, room: "reserved")
        let members = try await httpRequest(port: node.port, "GET", "/api/groups/chat_reserved/members", key: Self.key)
        let channel = try #require((members.json?["members"] as? [[String: Any]])?.first?["channel"] as? String, "\(members.body)")

        let disconnect = #"{"type": "channels.control", "action": "disconnect", "channel": "\#(channel)", "code": 4000, "reason": "forged"}"#
        let forgedJoin = #"{"type": "presence", "event": "join", "channel": "asgispecific.forged", "user": "mallory", "info": null, "node": "x", "at": 1}"#
        let cases: [(String, String)] = [
            ("/api/channels/asgi__group__channels.control/send", disconnect),
            ("/api/channels/asgi__presence__chat_reserved/send", forgedJoin),
            ("/api/channels/asgi__group__chat_reserved/send", #"{"type": "chat.message", "message": "around the group route", "__offset": 9000000000000000000}"#),
            ("/api/channels/asgi__group__channels.probe.\(node.nodeID)/send", #"{"type": "channels.probe"}"#),
            ("/api/channels/asgi__group__chat_reserved/disconnect", "{}"),
            ("/api/channels/asgi__presence__chat_reserved/disconnect", "{}"),
        ]
        for (path, body) in cases {
            let answer = try await httpRequest(port: node.port, "POST", path, key: Self.key, json: body)
            #expect(answer.status == 400, "\(path): \(answer.status) \(answer.body)")
            #expect(answer.json?["code"] as? String == "reserved_channel", "\(path): \(answer.body)")
            #expect((answer.json?["message"] as? String)?.contains("/api/groups/") == true, "\(path): \(answer.body)")
        }
        // Nothing reached the client: the next message through the group route is its first frame, and it is still connected.
        let sent = try await httpRequest(port: node.port, "POST", "/api/groups/chat_reserved/send", key: Self.key, json: #"{"type": "chat.message", "message": "legit"}"#)
        #expect(sent.status == 202)
        #expect(await client.waitForFrames(1))
        try await Task.sleep(for: .milliseconds(300))
        #expect(client.messages == ["legit"], "\(client.frames)")
        #expect(client.client.isOpen)
        let presence = try await httpRequest(port: node.port, "GET", "/api/groups/chat_reserved/presence", key: Self.key)
        #expect(!presence.body.contains("mallory"), "\(presence.body)")
        // A connection's own channel is still a valid target.
        let direct = try await httpRequest(port: node.port, "POST", "/api/channels/\(channel)/send", key: Self.key, json: #"{"type": "chat.message", "message": "direct"}"#)
        #expect(direct.status == 202, "\(direct.body)")
        #expect(await client.waitForFrames(2))
    }

    /// The reserved names follow the layer's prefix (`--prefix`), not a fixed `asgi`.
    @Test func reservedChannelsFollowTheLayersPrefix() async throws {
        let redis = try await RedisServer.start()
        let node = try await NodeProcess.start(redis: [redis.url], arguments: ["--api-key-file", try Self.keyFile(), "--prefix", "myapp"])
        defer { node.terminate() }
        let client = try await ChatClient.connect(port: node.port, room: "prefixed")
        let members = try await httpRequest(port: node.port, "GET", "/api/groups/chat_prefixed/members", key: Self.key)
        let channel = try #require((members.json?["members"] as? [[String: Any]])?.first?["channel"] as? String, "\(members.body)")
        #expect(channel.hasPrefix("myappspecific."))
        let disconnect = #"{"type": "channels.control", "action": "disconnect", "channel": "\#(channel)"}"#
        let answer = try await httpRequest(port: node.port, "POST", "/api/channels/myapp__group__channels.control/send", key: Self.key, json: disconnect)
        #expect(answer.status == 400 && answer.json?["code"] as? String == "reserved_channel", "\(answer.body)")
        try await Task.sleep(for: .milliseconds(300))
        #expect(client.client.isOpen)
    }

    // MARK: - Item 6: bodies

    /// Sockets that each declare a 1 MiB body and send 900 KiB of it without a key: each gets its refusal
    /// from the request head, and the node does not keep what they send (its RSS grows far less than the total).
    @Test(arguments: [
        Flood(api: true, path: "/api/groups/chat_x/send", sockets: 300, status: 401),
        Flood(api: false, path: "/api/groups/chat_x/send", sockets: 100, status: 404),
        Flood(api: true, path: "/healthz", sockets: 100, status: 405),
    ])
    func bodiesAreNotReadBeforeTheHeadIsChecked(_ flood: Flood) async throws {
        raiseOpenFileLimit(to: 4096)
        let node = try await NodeProcess.start(arguments: flood.api ? ["--api-key-file", try Self.keyFile()] : [])
        defer { node.terminate() }
        let declared = 1024 * 1024
        let sent = 900 * 1024
        let head = "POST \(flood.path) HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: \(declared)\r\n\r\n"
        let request = Array(head.utf8) + [UInt8](repeating: UInt8(ascii: "a"), count: sent)
        let before = try residentBytes(of: node.processIdentifier)
        let port = node.port
        let sockets = try await blocking {
            var sockets: [RawSocket] = []
            for _ in 0..<flood.sockets {
                let socket = try RawSocket(port: port)
                sockets.append(socket)
                _ = socket.send(request)
            }
            return sockets
        }
        defer { for socket in sockets { socket.close() } }
        // Everything sent has left the sockets' queues: the node has read it (and kept it, or not).
        let drained = await eventually(timeout: .seconds(60), every: .milliseconds(200)) { (try? loopbackQueuedBytes(port: port)) == 0 }
        #expect(drained, "bytes still queued: \(String(describing: try? loopbackQueuedBytes(port: port)))")
        let after = try residentBytes(of: node.processIdentifier)
        let total = flood.sockets * sent
        let growth = after - before
        print("\(flood): RSS \(before / 1_048_576) -> \(after / 1_048_576) MiB for \(total / 1_048_576) MiB sent (\(try loopbackQueuedBytes(port: port)) bytes unread)")
        try #require(growth < total / 4, "RSS grew by \(growth / 1_048_576) MiB for \(total / 1_048_576) MiB of bodies nobody should keep")
        let heads = try await blocking { sockets.map { $0.receive(until: "\r\n\r\n", timeout: .seconds(10)) } }
        let statuses = heads.map { $0.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0 }
        #expect(statuses.allSatisfy { $0 == flood.status }, "statuses: \(Dictionary(grouping: statuses) { $0 }.mapValues(\.count))")
        #expect(try await node.get("/healthz").status == 200)
    }

    /// The node holds at most `--api-max-bodies-in-flight` bytes of request bodies at once: past it an
    /// authenticated request gets 503 with Retry-After (counted), and once the bodies are answered it goes through.
    @Test func bodiesOverTheNodeBudgetAreRefused() async throws {
        let node = try await NodeProcess.start(arguments: [
            "--api-key-file", try Self.keyFile(), "--api-max-body-size", "4096", "--api-max-bodies-in-flight", "8192",
        ])
        defer { node.terminate() }
        let client = try await ChatClient.connect(port: node.port, room: "budget")
        @Sendable func body(_ text: String) -> [UInt8] {
            let start = #"{"type": "chat.message", "message": "\#(text)""#
            return Array((start + String(repeating: " ", count: 4096 - start.utf8.count - 1) + "}").utf8)
        }
        let head = "POST /api/groups/chat_budget/send HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \(Self.key)\r\n"
            + "Content-Type: application/json\r\nContent-Length: 4096\r\nExpect: 100-continue\r\n\r\n"
        let port = node.port
        // Two bodies of 4096 bytes on their way: the node said 100 Continue to both, they hold the budget.
        let (first, second) = try await blocking {
            let first = try RawSocket(port: port)
            let second = try RawSocket(port: port)
            for socket in [first, second] {
                _ = socket.send(Array(head.utf8))
                let answer = socket.receive(until: "\r\n\r\n", timeout: .seconds(10))
                guard answer.hasPrefix("HTTP/1.1 100") else { throw TestSupportError("no 100 Continue: \(answer)") }
            }
            return (first, second)
        }
        defer {
            first.close()
            second.close()
        }
        let refused = try await httpRequest(port: node.port, "POST", "/api/groups/chat_budget/send", key: Self.key, json: #"{"type": "chat.message", "message": "third"}"#)
        #expect(refused.status == 503, "\(refused.body)")
        #expect(refused.json?["code"] as? String == "busy", "\(refused.body)")
        #expect((refused.json?["message"] as? String)?.contains("--api-max-bodies-in-flight") == true)
        #expect(refused.header("Retry-After") == "1")

        let answered = try await blocking {
            _ = first.send(body("first"))
            return first.receive(until: "\r\n\r\n", timeout: .seconds(10))
        }
        #expect(answered.hasPrefix("HTTP/1.1 202"), "\(answered)")
        let retried = try await httpRequest(port: node.port, "POST", "/api/groups/chat_budget/send", key: Self.key, json: #"{"type": "chat.message", "message": "third"}"#)
        #expect(retried.status == 202, "\(retried.body)")
        let last = try await blocking {
            _ = second.send(body("second"))
            return second.receive(until: "\r\n\r\n", timeout: .seconds(10))
        }
        #expect(last.hasPrefix("HTTP/1.1 202"), "\(last)")
        #expect(await client.waitForFrames(3))
        #expect(client.messages == ["first", "third", "second"])
        #expect(metric(try await node.get("/metrics").body, "channels_api_bodies_refused_total") == 1)
    }

    // MARK: - Item 7: event streams

    /// Event streams hold no handshake slot once they started: more streams than `--max-pending-handshakes`
    /// and `/readyz` still answers, a WebSocket still connects.
    @Test func eventStreamsLeaveHandshakeSlotsFree() async throws {
        let node = try await NodeProcess.start(arguments: ["--api-key-file", try Self.keyFile(), "--max-pending-handshakes", "20"])
        defer { node.terminate() }
        var streams: [RawSocket] = []
        defer { for stream in streams { stream.close() } }
        for index in 0..<24 {
            let (socket, head) = try await Self.openStream(port: node.port)
            streams.append(socket)
            try #require(head.hasPrefix("HTTP/1.1 200") && head.contains("event: snapshot"), "stream \(index): \(head)")
        }
        #expect(try await node.get("/readyz").status == 200)
        let client = try await ChatClient.connect(port: node.port, room: "streams")
        #expect(client.client.isOpen)
    }

    /// However many streams watch the same thing, the node makes one snapshot per interval for them.
    @Test func streamsShareOneSnapshotPerInterval() async throws {
        let node = try await NodeProcess.start(arguments: ["--api-key-file", try Self.keyFile()])
        defer { node.terminate() }
        func snapshots() async throws -> Double {
            try #require(metric(try await node.get("/metrics").body, "channels_api_event_snapshots_total"))
        }
        func made(over window: Duration) async throws -> Double {
            let start = try await snapshots()
            try await Task.sleep(for: window)
            return try await snapshots() - start
        }
        var streams: [RawSocket] = []
        defer { for stream in streams { stream.close() } }
        var heads: [String] = []
        func open() async throws {
            let (socket, head) = try await Self.openStream(port: node.port)
            streams.append(socket)
            heads.append(head)
        }
        try await open()
        let alone = try await made(over: .seconds(4))
        for _ in 0..<19 { try await open() }
        let shared = try await made(over: .seconds(4))
        print("snapshots in 4 s: 1 stream \(alone), 20 streams \(shared)")
        #expect(alone >= 1)
        #expect(shared <= 2 * alone + 2, "20 streams made \(shared) snapshots where one made \(alone)")
        // Every stream got a snapshot at once, the one the others share.
        #expect(heads.allSatisfy { $0.hasPrefix("HTTP/1.1 200") && $0.contains("event: snapshot") }, "\(heads)")
    }

    /// Past `--api-max-event-streams` a stream is refused with 503 and the reason (counted); a closed
    /// stream gives its place back.
    @Test func eventStreamsHaveALimit() async throws {
        let node = try await NodeProcess.start(arguments: ["--api-key-file", try Self.keyFile(), "--api-max-event-streams", "3"])
        defer { node.terminate() }
        var streams: [RawSocket] = []
        defer { for stream in streams { stream.close() } }
        for index in 0..<3 {
            let (socket, head) = try await Self.openStream(port: node.port, group: index == 0 ? "chat_a" : nil)
            streams.append(socket)
            try #require(head.hasPrefix("HTTP/1.1 200"), "\(head)")
        }
        let refused = try await httpRequest(port: node.port, "GET", "/api/events", key: Self.key)
        #expect(refused.status == 503, "\(refused.body)")
        #expect(refused.json?["code"] as? String == "too_many_streams", "\(refused.body)")
        #expect((refused.json?["message"] as? String)?.contains("--api-max-event-streams") == true)
        #expect(refused.header("Retry-After") != nil)
        #expect(metric(try await node.get("/metrics").body, "channels_api_event_streams_refused_total") == 1)
        #expect(metric(try await node.get("/metrics").body, "channels_api_event_streams") == 3)

        streams.removeFirst().close()
        let reopened = await eventually(timeout: .seconds(10), every: .milliseconds(100)) {
            guard let (socket, head) = try? await Self.openStream(port: node.port) else { return false }
            streams.append(socket)
            return head.hasPrefix("HTTP/1.1 200")
        }
        #expect(reopened)
    }

    /// Opens `GET /api/events` on a raw socket and reads until its first snapshot (or 10 s).
    static func openStream(port: Int, group: String? = nil) async throws -> (socket: RawSocket, head: String) {
        try await blocking {
            let socket = try RawSocket(port: port)
            let path = "/api/events" + (group.map { "?group=\($0)" } ?? "")
            _ = socket.send(Array("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \(key)\r\n\r\n".utf8))
            return (socket, socket.receive(until: "event: snapshot", timeout: .seconds(10)))
        }
    }
}

/// One flood of `bodiesAreNotReadBeforeTheHeadIsChecked`.
struct Flood: Sendable, CustomTestStringConvertible {
    let api: Bool
    let path: String
    let sockets: Int
    let status: Int
    var testDescription: String { "\(sockets) sockets to \(path), API \(api ? "on" : "off")" }
}

/// A metric's value in Prometheus text, `nil` when it is not there.
func metric(_ text: String, _ name: String) -> Double? {
    for line in text.split(separator: "\n") where line.hasPrefix(name + " ") {
        return Double(line.dropFirst(name.count + 1).trimmingCharacters(in: .whitespaces))
    }
    return nil
}

/// A process's resident memory in bytes (`VmRSS` in `/proc/<pid>/status`).
func residentBytes(of pid: Int32) throws -> Int {
    let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
    guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
        let kilobytes = Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
    else { throw TestSupportError("no VmRSS for \(pid)") }
    return kilobytes * 1024
}

/// Bytes on their way to the server listening on loopback `port` that it has not read yet: the clients'
/// unsent `tx_queue` and the server sockets' unread `rx_queue` in `/proc/net/tcp` (answers on their way
/// back are not counted).
func loopbackQueuedBytes(port: Int) throws -> Int {
    let table = try String(contentsOfFile: "/proc/net/tcp", encoding: .utf8)
    let hexPort = String(format: ":%04X", port)
    var total = 0
    for line in table.split(separator: "\n").dropFirst() {
        let fields = line.split(separator: " ", omittingEmptySubsequences: true)
        guard fields.count > 4 else { continue }
        let queues = fields[4].split(separator: ":").compactMap { Int($0, radix: 16) }
        guard queues.count == 2 else { continue }
        if fields[1].hasSuffix(hexPort) { total += queues[1] }  // the server's side: unread
        if fields[2].hasSuffix(hexPort) { total += queues[0] }  // a client's side: unsent
    }
    return total
}

/// Runs blocking socket work on a thread of its own, off the cooperative pool.
func blocking<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread.detachNewThread { continuation.resume(with: Result { try work() }) }
    }
}

/// A blocking TCP socket to 127.0.0.1, for requests URLSession cannot make: a body declared but not all
/// sent, a head waiting for 100 Continue, a stream kept open.
final class RawSocket: Sendable {
    let descriptor: Int32

    init(port: Int) throws {
        descriptor = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            Glibc.close(descriptor)
            throw TestSupportError("cannot connect to 127.0.0.1:\(port): errno \(errno)")
        }
    }

    /// Sends all of `bytes`; `false` when the peer closed first.
    func send(_ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { Glibc.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if written <= 0 { return false }
            offset += written
        }
        return true
    }

    /// What arrives until `marker` was read, the peer closed, or `timeout` passed.
    func receive(until marker: String, timeout: Duration) -> String {
        let deadline = ContinuousClock.now + timeout
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 16384)
        while !String(decoding: received, as: UTF8.self).contains(marker) {
            let left = deadline - ContinuousClock.now
            guard left > .zero else { break }
            var poll = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
            let milliseconds = Int32(left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000)
            guard Glibc.poll(&poll, 1, max(1, milliseconds)) > 0 else { continue }
            let count = buffer.withUnsafeMutableBytes { Glibc.recv(descriptor, $0.baseAddress, $0.count, 0) }
            if count <= 0 { break }
            received.append(contentsOf: buffer[0..<count])
        }
        return String(decoding: received, as: UTF8.self)
    }

    func close() {
        Glibc.close(descriptor)
    }
}
