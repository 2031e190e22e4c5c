import ChannelLayers
import ChannelsProtocol
import NIOCore
import OrderedCollections

/// Server-sent events (the HTML standard's `text/event-stream`) as bytes ready for the socket: what a
/// connection served as an event stream writes where a WebSocket connection writes a frame.
///
/// Event bytes never start with a byte of 0x80 or more, and every server-to-client WebSocket frame does
/// (FIN set), so a buffer says which it is: frames made for WebSocket clients (a consumer's own, error
/// frames) are turned into events as they are written to a stream, and the events a group message becomes
/// are made once per message, like its frame.
enum ServerEvent {
    /// An event: `event:` when named, `id:` when given, then the data, one `data:` line per line of it
    /// (CR, LF and CRLF each end a line, as the standard reads them), then the blank line that dispatches it.
    static func event(
        name: String? = nil, id: String? = nil, data: some Collection<UInt8>, allocator: ByteBufferAllocator = ByteBufferAllocator()
    ) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: data.count + 16 + (name?.utf8.count ?? 0) + (id?.utf8.count ?? 0))
        if let name {
            buffer.writeStaticString("event: ")
            buffer.writeString(name)
            buffer.writeInteger(UInt8(ascii: "\n"))
        }
        if let id {
            buffer.writeStaticString("id: ")
            buffer.writeString(id)
            buffer.writeInteger(UInt8(ascii: "\n"))
        }
        buffer.writeStaticString("data: ")
        // JSON has no raw line breaks: the whole is one write; other text is cut where the standard cuts it.
        var rest = data[...]
        while let cut = rest.firstIndex(where: { $0 == UInt8(ascii: "\n") || $0 == UInt8(ascii: "\r") }) {
            buffer.writeBytes(rest[..<cut])
            buffer.writeStaticString("\ndata: ")
            var next = rest.index(after: cut)
            if rest[cut] == UInt8(ascii: "\r"), next < rest.endIndex, rest[next] == UInt8(ascii: "\n") { next = rest.index(after: next) }
            rest = rest[next...]
        }
        buffer.writeBytes(rest)
        buffer.writeStaticString("\n\n")
        return buffer
    }

    /// An event with an id and no data: the browser's `EventSource` dispatches nothing but remembers the id,
    /// and sends it as `Last-Event-ID` when it reconnects.
    static func position(id: String) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeStaticString("id: ")
        buffer.writeString(id)
        buffer.writeStaticString("\n\n")
        return buffer
    }

    /// The id of a history group's message: `<epoch>:<offset>`.
    static func id(epoch: String, offset: Int64) -> String { "\(epoch):\(offset)" }

    /// A `Last-Event-ID` this node gave (`<epoch>:<offset>`), or `nil` when it is not one.
    static func position(fromID id: String) -> (epoch: String, offset: Int64)? {
        guard let colon = id.lastIndex(of: ":") else { return nil }
        let epoch = id[..<colon]
        let offset = id[id.index(after: colon)...]
        guard !epoch.isEmpty, !offset.isEmpty, offset.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }), let value = Int64(offset) else { return nil }
        return (String(epoch), value)
    }

    /// What a frame made for a WebSocket client becomes on a stream: a text frame an unnamed event, any other
    /// frame `nil` (binary data has no place in an event stream; control frames have their own forms here).
    static func converting(frame: ByteBuffer, allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer? {
        guard let first = frame.getInteger(at: frame.readerIndex, as: UInt8.self), first & 0x0f == 0x1, first & 0x40 == 0,
            let payload = ServerFrame.payload(of: frame)
        else { return nil }
        return event(data: payload.readableBytesView, allocator: allocator)
    }

    /// Whether the bytes are an event (or the stream's head), not a WebSocket frame.
    static func isEvent(_ buffer: ByteBuffer) -> Bool {
        guard let first = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self) else { return true }
        return first < 0x80
    }

    /// A comment line: proxies see bytes and keep the stream open; `EventSource` ignores it.
    static let keepAlive = ByteBuffer(string: ":\n\n")

    /// `event: close` with `{"code": C, "reason": R}`, written before the node ends a stream: the code a
    /// WebSocket client would have been closed with.
    static func close(code: UInt16, reason: String) -> ByteBuffer {
        let object: OrderedDictionary<String, MessageValue> = ["code": .int(Int64(code)), "reason": .string(reason)]
        return event(name: "close", data: Array(((try? ClientFrame.encode(object)) ?? "{}").utf8))
    }

    /// The HTTP answer's head of an event stream and its first field: `retry`, the milliseconds a browser waits
    /// before it reconnects. The body has no length: it ends when the node closes the connection.
    static func responseHead(headers: [(name: String, value: String)], retryMilliseconds: Int) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeStaticString(
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nCache-Control: no-store\r\nX-Accel-Buffering: no\r\nConnection: close\r\n"
        )
        for header in headers where isSafe(header.name) && isSafe(header.value) {
            buffer.writeString("\(header.name): \(header.value)\r\n")
        }
        buffer.writeString("\r\nretry: \(retryMilliseconds)\n\n")
        return buffer
    }

    /// No CR, LF or NUL: a header that cannot split the answer.
    private static func isSafe(_ text: String) -> Bool {
        !text.utf8.contains { $0 == 13 || $0 == 10 || $0 == 0 }
    }
}
