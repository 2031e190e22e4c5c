import ChannelLayers
import ChannelsProtocol
import NIOCore
import NIOWebSocket
import OrderedCollections
import PerMessageDeflate

/// Server-to-client WebSocket frames as bytes ready for the socket (RFC 6455 5.2: never masked).
///
/// A group message's frame is made once and written to every member that gets the same bytes, so the
/// node encodes frames itself instead of handing each member a `WebSocketFrame` to encode.
enum ServerFrame {
    /// A whole frame: header then payload.
    static func make(_ opcode: WebSocketOpcode, payload: some Collection<UInt8>, allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: payload.count + 10)
        writeHeader(opcode, length: payload.count, into: &buffer)
        buffer.writeBytes(payload)
        return buffer
    }

    /// A text frame of a string's UTF-8.
    static func text(_ text: String, allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        var text = text
        return text.withUTF8 { make(.text, payload: $0, allocator: allocator) }
    }

    /// A close frame with a code and a reason cut to fit a control frame (125 bytes).
    static func close(code: UInt16, reason: String) -> ByteBuffer {
        var cut = Substring(reason)
        // Whole characters only: a UTF-8 sequence cut in half would make the client fail the close (1007).
        while cut.utf8.count > 123 { cut = cut.dropLast() }
        let payload = [UInt8(code >> 8), UInt8(code & 0xff)] + Array(cut.utf8)
        return make(.connectionClose, payload: payload)
    }

    /// A whole frame with a raw opcode and RSV1 (set: a permessage-deflate payload).
    static func make(opcode: UInt8, rsv1: Bool, payload: some Collection<UInt8>, allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: payload.count + 10)
        writeHeader(first: 0x80 | (rsv1 ? 0x40 : 0) | (opcode & 0x0f), length: payload.count, into: &buffer)
        buffer.writeBytes(payload)
        return buffer
    }

    /// A text or binary frame compressed (permessage-deflate): RSV1 set, the payload deflated; `nil` for other
    /// frames, frames already compressed, or when zlib failed (the frame then goes as it is).
    static func deflated(_ frame: ByteBuffer, allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer? {
        guard let first = frame.getInteger(at: frame.readerIndex, as: UInt8.self), first & 0x40 == 0 else { return nil }
        let opcode = first & 0x0f
        guard opcode == 0x1 || opcode == 0x2, let payload = payload(of: frame), let compressed = PerMessageDeflate.deflate(payload, allocator: allocator)
        else { return nil }
        return make(opcode: opcode, rsv1: true, payload: compressed.readableBytesView, allocator: allocator)
    }

    /// The payload of a frame this type made (never masked), or `nil` when the bytes are not one whole frame.
    static func payload(of frame: ByteBuffer) -> ByteBuffer? {
        guard let second = frame.getInteger(at: frame.readerIndex + 1, as: UInt8.self) else { return nil }
        let start: Int
        let length: Int
        switch second & 0x7f {
        case 126:
            guard let value = frame.getInteger(at: frame.readerIndex + 2, as: UInt16.self) else { return nil }
            (start, length) = (4, Int(value))
        case 127:
            guard let value = frame.getInteger(at: frame.readerIndex + 2, as: UInt64.self) else { return nil }
            (start, length) = (10, Int(value))
        case let short:
            (start, length) = (2, Int(short))
        }
        guard frame.readableBytes == start + length else { return nil }
        return frame.getSlice(at: frame.readerIndex + start, length: length)
    }

    private static func writeHeader(_ opcode: WebSocketOpcode, length: Int, into buffer: inout ByteBuffer) {
        writeHeader(first: UInt8(0x80) | UInt8(webSocketOpcode: opcode), length: length, into: &buffer)
    }

    private static func writeHeader(first: UInt8, length: Int, into buffer: inout ByteBuffer) {
        buffer.writeInteger(first)
        switch length {
        case ..<126:
            buffer.writeInteger(UInt8(length))
        case ..<65536:
            buffer.writeInteger(UInt8(126))
            buffer.writeInteger(UInt16(length))
        default:
            buffer.writeInteger(UInt8(127))
            buffer.writeInteger(UInt64(length))
        }
    }

    // MARK: - Frames the node itself sends

    /// `{"type": "recovery", "recovered": R, "epoch": E, "offset": N}`.
    static func recovery(recovered: Bool, epoch: String, offset: Int64) -> ByteBuffer {
        let answer: OrderedDictionary<String, MessageValue> = [
            "type": "recovery", "recovered": .bool(recovered), "epoch": .string(epoch), "offset": .int(offset),
        ]
        return text((try? ClientFrame.encode(answer)) ?? "{}")
    }

    /// The key presence frames are kept under in a delivery (one frame per presence event and node).
    static let presenceShape = ForwardRule(fields: [])

    /// `{"type": "join" | "leave", "channel", "user", "info", "node"}`, and `"reason": "node_lost"` for the
    /// members of a node that died.
    static func presenceEvent(_ message: Message) -> ByteBuffer? {
        var object: OrderedDictionary<String, MessageValue> = ["type": message["event"] ?? "join"]
        for key in ["channel", "user", "info", "node"] { object[key] = message[key] ?? .null }
        if let reason = message["reason"] { object["reason"] = reason }
        return (try? ClientFrame.encode(object)).map { text($0) }
    }
}
