import Foundation
import NIOCore
import NIOPosix
import Synchronization

/// A server-sent events client on a raw socket, reading as the HTML standard's `EventSource` parses: the
/// answer's status and headers, then every event with its name and id, the `retry` field, and whether
/// the node ended the stream.
public final class EventStreamClient: Sendable {
    public struct Event: Sendable, Equatable, CustomStringConvertible {
        /// `message` when the event had no `event:` field.
        public var name: String
        /// The last event id after this event (as `EventSource.lastEventId` reads it).
        public var lastID: String
        public var data: String

        public var json: [String: Any]? { try? JSONSerialization.jsonObject(with: Data(data.utf8)) as? [String: Any] }
        public var description: String { "\(name) [\(lastID)] \(data)" }
    }

    struct State {
        var bytes: [UInt8] = []
        var headEnd: Int?
        var status = 0
        var headers: [(String, String)] = []
        var parsed = 0
        var events: [Event] = []
        var lastID = ""
        var retry: Int?
        var comments = 0
        var closed = false
        // The event being read.
        var name = ""
        var data: [String] = []
    }

    let state = Mutex(State())
    let channel: any Channel

    private init(channel: any Channel) {
        self.channel = channel
    }

    /// Sends `GET path` with `Accept: text/event-stream` and the headers; `receiveBuffer` makes the socket's
    /// kernel buffer that small (a client that stops reading: ``stopReading()``).
    public static func connect(port: Int, path: String, headers: [(String, String)] = [], receiveBuffer: Int? = nil) async throws -> EventStreamClient {
        let holder = Mutex<EventStreamClient?>(nil)
        var bootstrap = ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        if let receiveBuffer { bootstrap = bootstrap.channelOption(.socketOption(.so_rcvbuf), value: SocketOptionValue(receiveBuffer)) }
        let channel = try await bootstrap.channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(Reader { bytes in holder.withLock { $0 }?.take(bytes) } closed: { holder.withLock { $0 }?.ended() })
            }
        }.connect(host: "127.0.0.1", port: port).get()
        let client = EventStreamClient(channel: channel)
        holder.withLock { $0 = client }
        var request = "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nAccept: text/event-stream\r\n"
        for (name, value) in headers { request += "\(name): \(value)\r\n" }
        request += "\r\n"
        try await channel.writeAndFlush(ByteBuffer(string: request)).get()
        return client
    }

    public var status: Int { state.withLock { $0.status } }
    public var events: [Event] { state.withLock { $0.events } }
    /// The unnamed events (`EventSource.onmessage`).
    public var messages: [Event] { events.filter { $0.name == "message" } }
    public var retry: Int? { state.withLock { $0.retry } }
    /// Comment lines (the node's keep-alives).
    public var comments: Int { state.withLock { $0.comments } }
    public var isClosed: Bool { state.withLock { $0.closed } }
    /// The body as text (a refusal's reason).
    public var body: String {
        state.withLock { state in state.headEnd.map { String(decoding: state.bytes[$0...], as: UTF8.self) } ?? "" }
    }

    public func header(_ name: String) -> String? {
        state.withLock { $0.headers.first { $0.0.lowercased() == name.lowercased() }?.1 }
    }

    public func waitForStatus(timeout: Duration = .seconds(10)) async -> Int {
        _ = await eventually(timeout: timeout, every: .milliseconds(10)) { self.status != 0 || self.isClosed }
        return status
    }

    /// Waits until `predicate` holds for the events so far.
    public func waitFor(timeout: Duration = .seconds(10), _ predicate: @escaping @Sendable ([Event]) -> Bool) async -> Bool {
        await eventually(timeout: timeout, every: .milliseconds(10)) { predicate(self.events) }
    }

    public func waitForMessages(_ count: Int, timeout: Duration = .seconds(10)) async -> Bool {
        await waitFor(timeout: timeout) { $0.filter { $0.name == "message" }.count >= count }
    }

    public func waitForClose(timeout: Duration = .seconds(10)) async -> Bool {
        await eventually(timeout: timeout, every: .milliseconds(10)) { self.isClosed }
    }

    /// Stops reading the socket: what the node sends waits in the node.
    public func stopReading() async throws {
        try await channel.setOption(.autoRead, value: false).get()
    }

    public func close() {
        channel.close(promise: nil)
    }

    func ended() {
        state.withLock { $0.closed = true }
    }

    func take(_ bytes: ByteBuffer) {
        state.withLock { state in
            state.bytes += bytes.readableBytesView
            if state.headEnd == nil {
                guard let end = Self.find([13, 10, 13, 10], in: state.bytes) else { return }
                let head = String(decoding: state.bytes[..<end], as: UTF8.self).components(separatedBy: "\r\n")
                state.status = head.first.flatMap { Int($0.split(separator: " ").dropFirst().first ?? "") } ?? -1
                state.headers = head.dropFirst().compactMap { line in
                    guard let colon = line.firstIndex(of: ":") else { return nil }
                    return (String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
                }
                state.headEnd = end + 4
                state.parsed = end + 4
            }
            Self.parse(&state)
        }
    }

    /// Reads whole lines (LF-ended; the node never sends CR) as the standard's event stream interpretation.
    private static func parse(_ state: inout State) {
        while let newline = state.bytes[state.parsed...].firstIndex(of: 10) {
            let line = String(decoding: state.bytes[state.parsed..<newline], as: UTF8.self)
            state.parsed = newline + 1
            if line.isEmpty {
                if !state.data.isEmpty {
                    state.events.append(Event(name: state.name.isEmpty ? "message" : state.name, lastID: state.lastID, data: state.data.joined(separator: "\n")))
                }
                state.name = ""
                state.data = []
                continue
            }
            if line.hasPrefix(":") {
                state.comments += 1
                continue
            }
            let field: String
            var value: String
            if let colon = line.firstIndex(of: ":") {
                field = String(line[..<colon])
                value = String(line[line.index(after: colon)...])
                if value.hasPrefix(" ") { value.removeFirst() }
            } else {
                field = line
                value = ""
            }
            switch field {
            case "event": state.name = value
            case "data": state.data.append(value)
            case "id": state.lastID = value
            case "retry": state.retry = Int(value)
            default: break
            }
        }
    }

    private static func find(_ needle: [UInt8], in bytes: [UInt8]) -> Int? {
        guard bytes.count >= needle.count else { return nil }
        for start in 0...(bytes.count - needle.count) where bytes[start..<(start + needle.count)].elementsEqual(needle) { return start }
        return nil
    }

    final class Reader: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let onBytes: @Sendable (ByteBuffer) -> Void
        let onClose: @Sendable () -> Void

        init(_ onBytes: @escaping @Sendable (ByteBuffer) -> Void, closed onClose: @escaping @Sendable () -> Void) {
            self.onBytes = onBytes
            self.onClose = onClose
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            onBytes(unwrapInboundIn(data))
        }

        func channelInactive(context: ChannelHandlerContext) {
            onClose()
        }
    }
}
