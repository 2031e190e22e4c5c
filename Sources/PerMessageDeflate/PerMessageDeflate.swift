import CompressNIO
import NIOCore
import NIOPosix

/// permessage-deflate (RFC 7692) as the node and its client speak it: every message compressed on its own
/// (`server_no_context_takeover`), so that one compressed frame is valid for every member of a group, and
/// clients asked to do the same (`client_no_context_takeover`), so that no connection keeps an inflate window.
public enum PerMessageDeflate {
    /// The server's answer to a client's `Sec-WebSocket-Extensions` offers, and what a client offers.
    public static let response = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"

    /// Whether one of the offers in `headers` (`Sec-WebSocket-Extensions`, comma-separated offers of
    /// `;`-separated parameters) is a permessage-deflate the node can take: its parameters are among RFC
    /// 7692's and ask nothing the node does not do (a `server_max_window_bits` under 15 would need a
    /// compressor of its own; such an offer is passed over, the next one may do).
    public static func accepts(offers headers: [String]) -> Bool {
        for header in headers {
            for offer in header.split(separator: ",") {
                let parameters = offer.split(separator: ";").map { $0.trimmingSpaces() }
                guard parameters.first?.lowercased() == "permessage-deflate" else { continue }
                if parameters.dropFirst().allSatisfy(acceptable) { return true }
            }
        }
        return false
    }

    private static func acceptable(_ parameter: Substring) -> Bool {
        let parts = parameter.split(separator: "=", maxSplits: 1).map { $0.trimmingSpaces() }
        let name = parts[0].lowercased()
        let value = parts.count > 1 ? parts[1].trimmingCharacters(in: "\"") : nil
        switch name {
        case "server_no_context_takeover", "client_no_context_takeover": return value == nil
        // The client may use any window up to the one it names: the node inflates with 15 bits.
        case "client_max_window_bits": return value == nil || Int(value!).map { (8...15).contains($0) } == true
        case "server_max_window_bits": return value == "15"
        default: return false
        }
    }

    /// A compressed message inflated past the limit it was given (a zip bomb, or simply too large).
    public struct TooLarge: Error {
        public init() {}
    }
    /// The compressed bytes are not DEFLATE.
    public struct Corrupt: Error {
        public init() {}
    }

    /// One compressor and one decompressor per event loop thread: a message is compressed or inflated in one
    /// go, so nothing is kept between messages and idle connections hold no zlib state.
    // Unchecked: each instance is made and used by one thread only (a ThreadSpecificVariable's value).
    private final class Codecs: @unchecked Sendable {
        let compressor: ZlibCompressor
        let decompressor: ZlibDecompressor
        init() throws {
            compressor = try ZlibCompressor(algorithm: .deflate, configuration: ZlibConfiguration(windowSize: .window32k))
            decompressor = try ZlibDecompressor(algorithm: .deflate, windowSize: 15)
        }
    }

    private static let codecs = ThreadSpecificVariable<Codecs>()

    private static func local() -> Codecs? {
        if let codecs = codecs.currentValue { return codecs }
        guard let made = try? Codecs() else { return nil }
        codecs.currentValue = made
        return made
    }

    /// A message's payload compressed as a permessage-deflate frame carries it (the sync flush's empty block
    /// left off, RFC 7692 7.2.1); `nil` when zlib failed (send it uncompressed then).
    public static func deflate(_ payload: ByteBuffer, allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer? {
        guard let codecs = local() else { return nil }
        var payload = payload
        let compressor = codecs.compressor
        var output = allocator.buffer(capacity: compressor.maxSize(from: payload))
        do {
            try compressor.reset()
            try compressor.deflate(from: &payload, to: &output, flush: .sync)
        } catch {
            return nil
        }
        if output.readableBytes >= 4 { output.moveWriterIndex(to: output.writerIndex - 4) }
        return output
    }

    /// A compressed frame's payload inflated, at most `limit` bytes.
    public static func inflate(_ payload: ByteBuffer, limit: Int, allocator: ByteBufferAllocator) throws -> ByteBuffer {
        guard let codecs = local() else { throw Corrupt() }
        let decompressor = codecs.decompressor
        try? decompressor.reset()
        var input = payload
        input.writeBytes([0x00, 0x00, 0xff, 0xff])
        var output = allocator.buffer(capacity: min(limit, max(256, payload.readableBytes * 4)))
        while true {
            do {
                try decompressor.inflate(from: &input, to: &output)
                return output
            } catch let error as CompressNIOError where error == .bufferOverflow {
                guard output.capacity < limit else { throw TooLarge() }
                output.reserveCapacity(minimumWritableBytes: min(limit - output.readableBytes, max(output.capacity, 1024)))
            } catch let error as CompressNIOError where error == .inputBufferOverflow {
                // All input used: the message is whole (the flush marker ends it without a final block).
                return output
            } catch {
                throw Corrupt()
            }
            if output.readableBytes > limit { throw TooLarge() }
        }
    }
}

extension Substring {
    fileprivate func trimmingSpaces() -> Substring {
        var result = self
        while result.first == " " || result.first == "\t" { result = result.dropFirst() }
        while result.last == " " || result.last == "\t" { result = result.dropLast() }
        return result
    }

    fileprivate func trimmingCharacters(in set: Character) -> Substring {
        var result = self
        while result.first == set { result = result.dropFirst() }
        while result.last == set { result = result.dropLast() }
        return result
    }
}
