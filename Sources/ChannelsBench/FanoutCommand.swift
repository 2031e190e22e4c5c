import ArgumentParser
import ChannelsWebSocketClient
import Foundation
import Histogram
import NIOPosix
import Synchronization

/// Rooms x clients x publishers over a list of nodes, measured from timestamps carried in the messages.
struct FanoutCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fanout",
        abstract: "Chat fan-out load: rooms x clients x publishers, spread over nodes like a load balancer would.",
        discussion: """
            Clients join /ws/chat/<room>/ round robin over the --node list; publishers are clients too. Each \
            message carries its publisher, a sequence number and its send time, so every receiver counts loss, \
            duplicates and latency. --rate sends that many messages per second in all; --rate 0 sends flat out \
            with at most --window messages per publisher not yet echoed back to it.
            """
    )

    @Option(name: .customLong("node"), help: "host:port of a node (repeat; clients are spread round robin).")
    var nodes: [String] = ["127.0.0.1:8000"]
    @Option(help: "Rooms.") var rooms = 1
    @Option(help: "Clients per room.") var clients = 100
    @Option(help: "Publishers in all (spread over the rooms).") var publishers = 10
    @Option(help: "Messages per second in all; 0 = flat out.") var rate = 0.0
    @Option(help: "Flat out: messages a publisher may have in flight.") var window = 16
    @Option(help: "Bytes of message text.") var payload = 64
    @Option(help: "Seconds of sending.") var duration = 10.0
    @Option(help: "Seconds to wait for stragglers after sending.") var drain = 2.0
    @Option(help: "Path template; {room} is replaced.") var path = "/ws/chat/{room}/"
    @Option(help: "An Origin header for every client (Django's AllowedHostsOriginValidator wants one).") var origin: String?
    @Flag(help: "Offer permessage-deflate (each client inflates what it receives).") var compression = false
    @Option(help: "How the clients that only read connect: websocket, or sse (server-sent events; publishers stay WebSockets).")
    var transport = BenchTransport.websocket
    @Flag(help: "Print one JSON object instead of text.") var json = false

    func validate() throws {
        guard rooms > 0, clients > 0, publishers > 0, publishers <= rooms * clients, duration > 0, payload >= 32, window > 0 else {
            throw ValidationError("rooms, clients, publishers, duration and window must be positive, publishers <= rooms x clients, payload >= 32")
        }
    }

    func run() async throws {
        raiseFileLimit()
        let targets = try nodes.map(parseNode)
        let total = rooms * clients
        let shared = FanoutState(clients: total, publishers: publishers)
        let started = ContinuousClock.now

        // Connect everyone, 64 at a time.
        var sockets = [BenchClient?](repeating: nil, count: total)
        var failures = 0
        for start in stride(from: 0, to: total, by: 64) {
            let batch = await withTaskGroup(of: (Int, BenchClient?).self) { group in
                for index in start..<min(start + 64, total) {
                    let (host, port) = targets[index % targets.count]
                    let room = index % rooms
                    let target = path.replacingOccurrences(of: "{room}", with: "bench\(room)")
                    let headers = origin.map { [("Origin", $0)] } ?? []
                    // Publisher p is client p; the others only read.
                    let streams = transport == .sse && index >= publishers
                    group.addTask {
                        if streams {
                            let reader = try? await EventStreamReader.connect(
                                host: host, port: port, path: target, headers: headers, onData: { shared.received(text: $0, by: index) }
                            )
                            return (index, reader.map(BenchClient.stream))
                        }
                        let client = try? await WebSocketClient.connect(
                            host: host, port: port, path: target, headers: headers, compression: compression,
                            onMessage: { if let text = $0.text { shared.received(text: text, by: index) } }
                        )
                        return (index, client.map(BenchClient.socket))
                    }
                }
                return await group.reduce(into: []) { $0.append($1) }
            }
            for (index, client) in batch {
                sockets[index] = client
                if client == nil { failures += 1 }
            }
        }
        let connectSeconds = ((ContinuousClock.now - started) / .seconds(1))
        var members = [Int](repeating: 0, count: rooms)
        for index in 0..<total where sockets[index] != nil { members[index % rooms] += 1 }

        // Publisher p is client p: rooms are index % rooms, so publishers spread over the rooms.
        let padding = Self.padding(count: max(0, payload - 32))
        let begin = ContinuousClock.now
        let end = begin + .milliseconds(Int64(duration * 1000))
        let progress = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(1))
                let (sent, delivered) = shared.progress
                FileHandle.standardError.write(Data("  \(Int((ContinuousClock.now - begin) / .seconds(1)))s: \(sent) sent, \(delivered) delivered\n".utf8))
            }
        }
        await withTaskGroup(of: Void.self) { group in
            for publisher in 0..<publishers {
                guard case .socket(let socket)? = sockets[publisher] else { continue }
                group.addTask {
                    await publish(publisher, on: socket, shared: shared, padding: padding, until: end)
                }
            }
        }
        let sendSeconds = (ContinuousClock.now - begin) / .seconds(1)
        // Drain: wait until every sent message reached every member of its room, or the drain time passes.
        let expected = { (0..<publishers).reduce(0) { $0 + shared.sent(by: $1) * members[$1 % rooms] } }
        let drainEnd = ContinuousClock.now + .milliseconds(Int64(drain * 1000))
        while ContinuousClock.now < drainEnd, shared.progress.delivered < expected() {
            try? await Task.sleep(for: .milliseconds(20))
        }
        progress.cancel()
        let report = shared.report(members: members, rooms: rooms)
        let deliverySeconds = max(sendSeconds, (report.lastDelivery.map { $0 - begin } ?? .zero) / .seconds(1))
        for socket in sockets { socket?.abort() }

        let result: [(String, String)] = [
            ("nodes", "\(nodes.count)"), ("rooms", "\(rooms)"), ("clients_per_room", "\(clients)"), ("publishers", "\(publishers)"),
            ("rate", rate == 0 ? "flat out (window \(window))" : "\(Int(rate))/s"), ("payload", "\(payload)"), ("compression", compression ? "on" : "off"), ("transport", transport.rawValue),
            ("connected", "\(total - failures)"), ("connect_failures", "\(failures)"), ("connect_seconds", format(connectSeconds)),
            ("messages_sent", "\(report.sent)"), ("messages_per_second", format(Double(report.sent) / sendSeconds)),
            ("deliveries", "\(report.delivered)"), ("deliveries_per_second", format(Double(report.delivered) / deliverySeconds)),
            ("expected_deliveries", "\(report.expected)"), ("lost", "\(report.lost)"), ("duplicates", "\(report.duplicates)"),
            ("latency_p50_ms", ms(report.histogram.valueAtPercentile(50))), ("latency_p90_ms", ms(report.histogram.valueAtPercentile(90))),
            ("latency_p99_ms", ms(report.histogram.valueAtPercentile(99))), ("latency_p999_ms", ms(report.histogram.valueAtPercentile(99.9))),
            ("latency_max_ms", ms(report.histogram.max)),
        ]
        if json {
            let numbers = Set(["rooms", "clients_per_room", "publishers", "payload", "connected", "connect_failures", "messages_sent", "deliveries",
                               "expected_deliveries", "lost", "duplicates", "nodes"])
            let body = result.map { key, value in
                "\"\(key)\":" + (numbers.contains(key) || Double(value) != nil && key != "rate" ? value : "\"\(value)\"")
            }.joined(separator: ",")
            print("{\(body)}")
        } else {
            for (key, value) in result { print("\(key.padding(toLength: 22, withPad: " ", startingAt: 0)) \(value)") }
        }
        if failures == total {
            throw BenchFailure(description: "no client could connect to \(nodes.joined(separator: ", ")); is a node listening there?")
        }
    }

    private func publish(_ publisher: Int, on socket: WebSocketClient, shared: FanoutState, padding: String, until end: ContinuousClock.Instant) async {
        let perPublisher = rate / Double(publishers)
        var sequence = 0
        var next = ContinuousClock.now
        while ContinuousClock.now < end {
            if perPublisher > 0 {
                next = next + .nanoseconds(Int64(1e9 / perPublisher))
                if next > ContinuousClock.now { try? await Task.sleep(until: next) }
            } else {
                await shared.waitForWindow(publisher: publisher, window: window)
            }
            let stamp = DispatchTime.now().uptimeNanoseconds
            socket.send(text: #"{"message":"\#(publisher)|\#(sequence)|\#(stamp)|\#(padding)"}"#)
            shared.didSend(publisher: publisher)
            sequence += 1
        }
    }

    private func parseNode(_ text: String) throws -> (String, Int) {
        let parts = text.split(separator: ":")
        guard parts.count == 2, let port = Int(parts[1]) else { throw ValidationError("--node takes host:port, not '\(text)'") }
        return (String(parts[0]), port)
    }
}

/// Everything the receivers and publishers share; the event loops write it, the command reads it.
final class FanoutState: Sendable {
    private struct Receiver {
        /// Next expected sequence number from each publisher.
        var next: [Int]
        var duplicates = 0
        var gaps = 0
    }

    private struct Publisher {
        var sent = 0
        var echoed = 0
        var waiter: CheckedContinuation<Void, Never>?
    }

    private let receivers: [Locked<Receiver>]
    private let publisherStates: [Locked<Publisher>]
    private let histograms: [Locked<Histogram<UInt64>>]
    private let counters = Mutex((delivered: 0, last: ContinuousClock.Instant?.none))

    init(clients: Int, publishers: Int) {
        receivers = (0..<clients).map { _ in Locked(Receiver(next: [Int](repeating: 0, count: publishers))) }
        publisherStates = (0..<publishers).map { _ in Locked(Publisher()) }
        histograms = (0..<8).map { _ in Locked(Histogram<UInt64>(highestTrackableValue: 120_000_000_000, numberOfSignificantValueDigits: .three)) }
    }

    func received(text: String, by client: Int) {
        let now = DispatchTime.now().uptimeNanoseconds
        guard let fields = Self.fields(text) else { return }
        let (publisher, sequence, stamp) = fields
        guard publisher < publisherStates.count else { return }
        receivers[client].withLock { receiver in
            let expected = receiver.next[publisher]
            if sequence == expected {
                receiver.next[publisher] = sequence + 1
            } else if sequence > expected {
                receiver.gaps += sequence - expected
                receiver.next[publisher] = sequence + 1
            } else {
                receiver.duplicates += 1
            }
        }
        _ = histograms[client % histograms.count].withLock { $0.record(now > stamp ? now - stamp : UInt64(0)) }
        counters.withLock {
            $0.delivered += 1
            $0.last = .now
        }
        if client == publisher {
            let waiter = publisherStates[publisher].withLock { state -> CheckedContinuation<Void, Never>? in
                state.echoed += 1
                defer { state.waiter = nil }
                return state.waiter
            }
            waiter?.resume()
        }
    }

    func didSend(publisher: Int) {
        publisherStates[publisher].withLock { $0.sent += 1 }
    }

    func sent(by publisher: Int) -> Int { publisherStates[publisher].withLock { $0.sent } }

    func waitForWindow(publisher: Int, window: Int) async {
        await withCheckedContinuation { continuation in
            let ready = publisherStates[publisher].withLock { state -> Bool in
                if state.sent - state.echoed < window { return true }
                state.waiter = continuation
                return false
            }
            if ready { continuation.resume() }
        }
    }

    var progress: (sent: Int, delivered: Int) {
        (publisherStates.reduce(0) { $0 + $1.withLock { $0.sent } }, counters.withLock { $0.delivered })
    }

    struct Report {
        let sent: Int
        let delivered: Int
        let expected: Int
        let lost: Int
        let duplicates: Int
        let histogram: Histogram<UInt64>
        let lastDelivery: ContinuousClock.Instant?
    }

    func report(members: [Int], rooms: Int) -> Report {
        let sentByPublisher = publisherStates.map { $0.withLock { $0.sent } }
        var lost = 0
        var duplicates = 0
        for (client, receiver) in receivers.enumerated() {
            receiver.withLock { state in
                duplicates += state.duplicates
                lost += state.gaps
                // Messages after the last one received are lost too, for publishers in this client's room.
                for (publisher, sent) in sentByPublisher.enumerated() where publisher % rooms == client % rooms {
                    lost += max(0, sent - state.next[publisher])
                }
            }
        }
        var merged = Histogram<UInt64>(highestTrackableValue: 120_000_000_000, numberOfSignificantValueDigits: .three)
        for histogram in histograms { histogram.withLock { merged.add($0) } }
        let expected = sentByPublisher.enumerated().reduce(0) { $0 + $1.element * members[$1.offset % rooms] }
        let (delivered, last) = counters.withLock { ($0.delivered, $0.last) }
        return Report(sent: sentByPublisher.reduce(0, +), delivered: delivered, expected: expected, lost: lost, duplicates: duplicates,
                      histogram: merged, lastDelivery: last)
    }

    /// Publisher, sequence and send time from `{"message":"p|s|t|..."}`.
    /// Both `{"message":"..."}` (Swift nodes) and `{"message": "..."}` (Python's json.dumps) are accepted.
    static func fields(_ frame: String) -> (Int, Int, UInt64)? {
        guard let key = frame.range(of: #""message":"#) else { return nil }
        let rest = frame[key.upperBound...].drop { $0 == " " }
        guard rest.first == "\"" else { return nil }
        let parts = rest.dropFirst().split(separator: "|", maxSplits: 3)
        guard parts.count >= 3, let publisher = Int(parts[0]), let sequence = Int(parts[1]), let stamp = UInt64(parts[2]) else { return nil }
        return (publisher, sequence, stamp)
    }
}

/// One value behind its own lock, so that many of them fit in an array.
final class Locked<Value>: @unchecked Sendable {
    // Unchecked: every access goes through `mutex`.
    private let mutex: Mutex<Value>
    init(_ value: sending Value) { mutex = Mutex(value) }
    func withLock<Result>(_ body: (inout sending Value) throws -> sending Result) rethrows -> sending Result {
        try mutex.withLock(body)
    }
}

/// Text frames received by the idle connections, counted on their event loops.
final class ReceivedCount: Sendable {
    let value = Atomic<Int>(0)
}

extension FanoutCommand {
    /// Text shaped like a model update's JSON (field names and values drawn from a small vocabulary), so that
    /// compression does what it does on real messages: neither a run of one letter nor random bytes.
    static func padding(count: Int) -> String {
        let words = ["id", "title", "status", "done", "updated_at", "owner", "alice", "bob", "todo", "2026-12-06T10:", "true", "false", "priority", "note"]
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        var text = ""
        text.reserveCapacity(count + 16)
        while text.utf8.count < count {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            let word = words[Int((state >> 33) % UInt64(words.count))]
            text += (state >> 20) % 3 == 0 ? "\(word):\((state >> 40) % 1000)," : word + " "
        }
        return String(text.utf8.prefix(count))!
    }
}

/// How long each connection took to open (TCP, handshake, the node's `connect()`).
final class ConnectTimes: Sendable {
    let value = Mutex<[Duration]>([])
}

/// `channels-bench idle`: holds N connections open.
struct IdleCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "idle", abstract: "Hold N idle WebSocket connections for a while.")

    @Option(name: .customLong("node"), help: "host:port of a node (repeat).") var nodes: [String] = ["127.0.0.1:8000"]
    @Option(help: "Connections.") var connections = 1000
    @Option(help: "Seconds to hold them.") var duration = 10.0
    @Option(help: "Path.") var path = "/ws/chat/idle/"
    @Option(help: "An Origin header for every connection.") var origin: String?
    @Option(help: "Spread the connections over this many chat rooms, /ws/chat/idle-<n>/ (0: every one on --path).") var rooms = 0
    @Option(help: "Connect from this many loopback addresses, 127.0.0.1 up (one has ~28,000 ports towards a server).")
    var sourceAddresses = 1
    @Flag(help: "Once all are connected, one sends a chat message; report how many received it (one room: --rooms 0).")
    var broadcast = false
    @Option(help: "A file of tokens, one per line: connection n sends line n (round robin) as Authorization: Bearer.")
    var tokenFile: String?
    @Option(help: "websocket, or sse: hold event streams (--broadcast then publishes from one more WebSocket).")
    var transport = BenchTransport.websocket
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        raiseFileLimit()
        let rooms = self.rooms, path = self.path, sources = max(1, sourceAddresses)
        let tokens = try tokenFile.map { path in
            try String(contentsOfFile: path, encoding: .utf8).split(whereSeparator: \.isNewline).map(String.init)
        } ?? []
        let connectTimes = ConnectTimes()
        let received = ReceivedCount()
        let started = ContinuousClock.now
        var sockets: [BenchClient] = []
        var failures = 0
        let transport = self.transport
        for start in stride(from: 0, to: connections, by: 64) {
            let batch = await withTaskGroup(of: BenchClient?.self) { group in
                for index in start..<min(start + 64, connections) {
                    let node = nodes[index % nodes.count].split(separator: ":")
                    group.addTask {
                        let target = rooms > 0 ? "/ws/chat/idle-\(index % rooms)/" : path
                        var headers = origin.map { [("Origin", $0)] } ?? []
                        if !tokens.isEmpty { headers.append(("Authorization", "Bearer " + tokens[index % tokens.count])) }
                        let began = ContinuousClock.now
                        defer { connectTimes.value.withLock { $0.append(ContinuousClock.now - began) } }
                        let host = String(node[0]), port = Int(node[1]) ?? 8000
                        let local = sources > 1 ? "127.0.0.\(1 + index % sources)" : nil
                        if transport == .sse {
                            let reader = try? await EventStreamReader.connect(
                                host: host, port: port, path: target, headers: headers, localAddress: local,
                                onData: { text in if text.contains("\"message\"") { received.value.add(1, ordering: .relaxed) } }
                            )
                            return reader.map(BenchClient.stream)
                        }
                        let socket = try? await WebSocketClient.connect(
                            host: host, port: port, path: target, headers: headers, localAddress: local,
                            onMessage: { message in
                                if message.text != nil { received.value.add(1, ordering: .relaxed) }
                            }
                        )
                        return socket.map(BenchClient.socket)
                    }
                }
                return await group.reduce(into: []) { $0.append($1) }
            }
            for client in batch {
                if let client { sockets.append(client) } else { failures += 1 }
            }
        }
        let connectSeconds = ((ContinuousClock.now - started) / .seconds(1))
        let times = connectTimes.value.withLock { $0 }.sorted()
        let percentile = { (p: Double) -> String in
            times.isEmpty ? "0" : ms(UInt64(max(0, times[min(times.count - 1, Int(Double(times.count) * p))] / .nanoseconds(1))))
        }
        FileHandle.standardError.write(Data("holding \(sockets.count) connections (\(failures) failed) for \(duration) s\n".utf8))
        try? await Task.sleep(for: .milliseconds(Int64(duration * 1000)))
        var broadcastReceived = -1
        if broadcast, !sockets.isEmpty {
            let node = nodes[0].split(separator: ":")
            switch sockets[0] {
            case .socket(let first):
                first.send(text: #"{"message": "broadcast"}"#)
            case .stream:
                // Streams only read: one more WebSocket (not counted) says it.
                let sender = try await WebSocketClient.connect(
                    host: String(node[0]), port: Int(node[1]) ?? 8000, path: path, headers: origin.map { [("Origin", $0)] } ?? [], onMessage: { _ in }
                )
                sender.send(text: #"{"message": "broadcast"}"#)
            }
            let deadline = ContinuousClock.now + .seconds(60)
            while received.value.load(ordering: .relaxed) < sockets.count, ContinuousClock.now < deadline {
                try? await Task.sleep(for: .milliseconds(50))
            }
            broadcastReceived = received.value.load(ordering: .relaxed)
        }
        let stillOpen = sockets.filter(\.isOpen).count
        for socket in sockets { socket.abort() }
        let broadcastJSON = broadcast ? #","broadcast_received":\#(broadcastReceived)"# : ""
        if json {
            print(
                #"{"connections":\#(sockets.count),"connect_failures":\#(failures),"connect_seconds":\#(format(connectSeconds)),"connect_p50_ms":\#(percentile(0.5)),"connect_p99_ms":\#(percentile(0.99)),"still_open":\#(stillOpen)\#(broadcastJSON)}"#
            )
        } else {
            print("connected \(sockets.count), failures \(failures), in \(format(connectSeconds)) s (each p50 \(percentile(0.5)) ms, p99 \(percentile(0.99)) ms); still open after \(duration) s: \(stillOpen)"
                + (broadcast ? "; broadcast received by \(broadcastReceived)" : ""))
        }
        if sockets.isEmpty && connections > 0 {
            throw BenchFailure(description: "no connection could be opened to \(nodes.joined(separator: ", ")); is a node listening there?")
        }
    }
}

func format(_ value: Double) -> String { String(format: "%.1f", value) }
func ms(_ nanoseconds: UInt64) -> String { String(format: "%.3f", Double(nanoseconds) / 1e6) }

func raiseFileLimit() {
    var limit = rlimit()
    getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    limit.rlim_cur = limit.rlim_max
    setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
}

/// How benchmark clients that only read connect.
enum BenchTransport: String, ExpressibleByArgument, Sendable {
    case websocket
    case sse
}

/// A benchmark's connection: a WebSocket, or an event stream.
enum BenchClient: Sendable {
    case socket(WebSocketClient)
    case stream(EventStreamReader)

    var isOpen: Bool {
        switch self {
        case .socket(let socket): socket.isOpen
        case .stream(let stream): stream.isOpen
        }
    }

    func abort() {
        switch self {
        case .socket(let socket): socket.abort()
        case .stream(let stream): stream.abort()
        }
    }
}
