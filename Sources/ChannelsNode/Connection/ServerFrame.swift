import ChannelLayers
import ChannelsProtocol
import NIOCore
import NIOWebSocket
import OrderedCollections

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

    private static func writeHeader(_ opcode: WebSocketOpcode, length: Int, into buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt8(0x80) | UInt8(webSocketOpcode: opcode))
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
