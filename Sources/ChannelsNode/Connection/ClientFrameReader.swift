import ChannelsProtocol
import NIOCore
import NIOWebSocket

/// A client's WebSocket frames, read from the socket's bytes (RFC 6455 5.2), with fragmented messages joined
/// (5.4). No I/O: ``ClientConnection`` hands it each read and handles what comes out.
///
/// It takes the place of two pipeline steps, NIO's frame decoder and a handler that joined fragments, whose
/// state (the decoder, its buffers, their contexts) was some 700 bytes of every idle connection. Here an idle
/// connection keeps nothing: only a read that cut a frame in two keeps that frame's bytes, and a message in
/// fragments its parts.
///
/// NIO's `NIOWebSocketFrameAggregator` drops the fragments' mask key and RSV1, so a fragmented message would
/// look unmasked (closed 1002) and a compressed one (RSV1 on its first fragment, RFC 7692 6.1) plain. Here each
/// fragment's mask is checked and its data unmasked, and the joined message goes on with the first fragment's
/// RSV1 and an all-zero mask key (the data is unmasked already; the connection's "masked" check holds).
struct ClientFrameReader {
    /// Why the client's bytes cannot be read on: the connection closes with 1009 or 1002.
    enum Failure: Error, Equatable {
        /// A frame, or a message joined from fragments, over the size limit.
        case tooLarge
        /// Bytes that break RFC 6455 (what is wrong, for the log).
        case protocolError(String)
    }

    /// Fragments joined in one message at most.
    static let maxFragments = 1024

    private struct Assembly {
        let first: WebSocketFrame
        var joined: ByteBuffer
        var fragments: Int
    }

    /// The bytes of a frame that a read cut in two.
    private var pending: ByteBuffer?
    /// A message whose fragments are arriving (out of line: most connections never fragment).
    private var assembly: OutOfLine<Assembly>?

    /// Bytes of storage kept for a cut frame (0 when none): bounded by a frame and a read.
    var heldCapacity: Int { pending?.capacity ?? 0 }

    /// The next whole frame or joined message in `bytes` (one read, taken after what an earlier read left);
    /// `nil` once `bytes` holds no more, keeping a cut frame's bytes for the next read. Payloads are still masked,
    /// except a joined message's. Throws at the first rule broken: read no further from the connection.
    mutating func next(from bytes: inout ByteBuffer, maxMessageSize: Int) throws(Failure) -> WebSocketFrame? {
        if var held = pending {
            pending = nil
            // Only the cut frame's bytes are kept, from the start of the buffer: appending to one that still held
            // the frames read before it grew the buffer by every read of a flood whose reads end mid-frame.
            held.discardReadBytes()
            held.writeBuffer(&bytes)
            bytes = held
        }
        while true {
            guard let frame = try nextFrame(from: &bytes, maxPayload: maxMessageSize) else {
                if bytes.readableBytes > 0 {
                    pending = bytes
                    bytes.moveReaderIndex(to: bytes.writerIndex)
                }
                return nil
            }
            if let message = try assemble(frame, maxMessageSize: maxMessageSize) { return message }
        }
    }

    private func nextFrame(from bytes: inout ByteBuffer, maxPayload: Int) throws(Failure) -> WebSocketFrame? {
        let parsed = bytes.withUnsafeReadableBytes { raw in
            Result { () throws(WebSocketFrameHeader.Failure) in try WebSocketFrameHeader.parse(raw, maxPayload: maxPayload) }
        }
        let header: WebSocketFrameHeader
        switch parsed {
        case .success(nil): return nil
        case .success(let parsedHeader?): header = parsedHeader
        case .failure(.tooLarge): throw .tooLarge
        case .failure(let failure): throw .protocolError(failure.description)
        }
        guard bytes.readableBytes >= header.headerLength + header.payloadLength else { return nil }
        bytes.moveReaderIndex(forwardBy: header.headerLength)
        let payload = bytes.readSlice(length: header.payloadLength)!
        let maskKey = header.maskKey.flatMap { key in withUnsafeBytes(of: key.bigEndian) { WebSocketMaskingKey($0) } }
        return WebSocketFrame(
            fin: header.fin, rsv1: header.rsv1, rsv2: header.rsv2, rsv3: header.rsv3,
            opcode: WebSocketOpcode(encodedWebSocketOpcode: header.opcode)!, maskKey: maskKey, data: payload
        )
    }

    /// A frame to hand on (a whole one, a control frame, a joined message), or `nil` while fragments arrive.
    private mutating func assemble(_ frame: WebSocketFrame, maxMessageSize: Int) throws(Failure) -> WebSocketFrame? {
        switch frame.opcode {
        case .text, .binary:
            guard assembly == nil else {
                assembly = nil
                throw .protocolError("a new message began before the fragmented one before it ended")
            }
            // Unmasked fragments go on as they are: the connection closes them with 1002.
            if frame.fin || frame.maskKey == nil { return frame }
            assembly = OutOfLine(Assembly(first: frame, joined: frame.unmaskedData, fragments: 1))
            return nil
        case .continuation:
            guard let current = assembly else { throw .protocolError("a continuation frame with no message to continue") }
            guard frame.maskKey != nil else {
                assembly = nil
                return frame
            }
            var piece = frame.unmaskedData
            current.value.fragments += 1
            guard current.value.fragments <= Self.maxFragments else {
                assembly = nil
                throw .protocolError("a message in more than \(Self.maxFragments) fragments")
            }
            guard current.value.joined.readableBytes + piece.readableBytes <= maxMessageSize else {
                assembly = nil
                throw .tooLarge
            }
            current.value.joined.writeBuffer(&piece)
            guard frame.fin else { return nil }
            assembly = nil
            let first = current.value.first
            return WebSocketFrame(
                fin: true, rsv1: first.rsv1, rsv2: first.rsv2, rsv3: first.rsv3, opcode: first.opcode,
                maskKey: WebSocketMaskingKey([0, 0, 0, 0] as [UInt8]), data: current.value.joined
            )
        default:
            // Control frames may come between fragments.
            return frame
        }
    }
}
