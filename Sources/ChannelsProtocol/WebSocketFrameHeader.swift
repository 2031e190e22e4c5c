/// The header of a WebSocket frame (RFC 6455 5.2): what comes before its payload.
///
/// The node reads client frames with it straight from the socket's bytes, so that an idle connection keeps no
/// decoder state at all: only a frame cut in two by a read keeps its bytes until the rest arrives.
public struct WebSocketFrameHeader: Sendable, Hashable {
    public var fin: Bool
    public var rsv1: Bool
    public var rsv2: Bool
    public var rsv3: Bool
    /// The 4-bit opcode as sent (8 and above are control frames).
    public var opcode: UInt8
    /// The masking key's four bytes in order, big-endian in one word; `nil` when the frame is not masked.
    public var maskKey: UInt32?
    /// Bytes of payload after the header.
    public var payloadLength: Int
    /// Bytes of the header itself: 2 to 14.
    public var headerLength: Int

    public init(
        fin: Bool, rsv1: Bool = false, rsv2: Bool = false, rsv3: Bool = false, opcode: UInt8, maskKey: UInt32?, payloadLength: Int,
        headerLength: Int
    ) {
        self.fin = fin
        self.rsv1 = rsv1
        self.rsv2 = rsv2
        self.rsv3 = rsv3
        self.opcode = opcode
        self.maskKey = maskKey
        self.payloadLength = payloadLength
        self.headerLength = headerLength
    }

    /// Whether the opcode is a control frame's (close, ping, pong and the reserved 0xB-0xF).
    public var isControl: Bool { opcode & 0x8 != 0 }

    /// Why a frame's header cannot be accepted. The connection that sent it is closed.
    public enum Failure: Error, Sendable, Hashable, CustomStringConvertible {
        /// The payload is longer than the limit the reader was given (close 1009).
        case tooLarge(length: UInt64, limit: Int)
        /// A 64-bit length with its top bit set (RFC 6455 5.2 forbids it).
        case lengthOutOfRange
        /// A control frame with more than 125 bytes of payload (RFC 6455 5.5).
        case controlFrameTooLong(length: UInt64)
        /// A control frame without FIN (RFC 6455 5.5: control frames are not fragmented).
        case fragmentedControlFrame

        public var description: String {
            switch self {
            case .tooLarge(let length, let limit): "a frame of \(length) bytes is over the limit of \(limit)"
            case .lengthOutOfRange: "a frame length with its most significant bit set"
            case .controlFrameTooLong(let length): "a control frame of \(length) bytes (at most 125)"
            case .fragmentedControlFrame: "a fragmented control frame"
            }
        }
    }

    /// Parses the header at the start of `bytes`: `nil` while the bytes are not enough to hold it. Throws as soon
    /// as the bytes read so far break a rule, before the rest arrives (a length over `maxPayload` is refused
    /// without waiting for its payload).
    public static func parse(_ bytes: UnsafeRawBufferPointer, maxPayload: Int) throws(Failure) -> WebSocketFrameHeader? {
        guard bytes.count >= 2 else { return nil }
        let first = bytes[0]
        let second = bytes[1]
        let opcode = first & 0x0F
        let fin = first & 0x80 != 0
        var offset = 2
        var length = UInt64(second & 0x7F)
        if length == 126 {
            guard bytes.count >= 4 else { return nil }
            length = UInt64(bytes[2]) << 8 | UInt64(bytes[3])
            offset = 4
        } else if length == 127 {
            guard bytes.count >= 10 else { return nil }
            length = (2..<10).reduce(UInt64(0)) { $0 << 8 | UInt64(bytes[$1]) }
            offset = 10
            guard length & (1 << 63) == 0 else { throw .lengthOutOfRange }
        }
        if opcode & 0x8 != 0 {
            guard fin else { throw .fragmentedControlFrame }
            guard length <= 125 else { throw .controlFrameTooLong(length: length) }
        }
        guard length <= UInt64(max(maxPayload, 0)) else { throw .tooLarge(length: length, limit: maxPayload) }
        var maskKey: UInt32?
        if second & 0x80 != 0 {
            guard bytes.count >= offset + 4 else { return nil }
            maskKey = (offset..<offset + 4).reduce(UInt32(0)) { $0 << 8 | UInt32(bytes[$1]) }
            offset += 4
        }
        return WebSocketFrameHeader(
            fin: fin, rsv1: first & 0x40 != 0, rsv2: first & 0x20 != 0, rsv3: first & 0x10 != 0, opcode: opcode, maskKey: maskKey,
            payloadLength: Int(length), headerLength: offset
        )
    }
}
