import CHiredis
import NIOCore

/// Parses RESP2 replies with hiredis' `redisReader` and copies each into a ``RedisReply``.
///
/// Owns the C reader. Not thread safe: each instance lives in one channel handler, on its event loop.
/// Every `redisReply` is copied and freed inside ``next()``; no hiredis pointer leaves this type.
final class RedisReplyDecoder {
    private let reader: UnsafeMutablePointer<redisReader>

    init() throws(RedisError) {
        guard let reader = redisReaderCreate() else {
            throw RedisError(.protocolError, "hiredis could not allocate a reply reader (out of memory)")
        }
        self.reader = reader
    }

    deinit {
        redisReaderFree(reader)
    }

    /// Hands received bytes to the reader; it buffers partial replies internally.
    func feed(_ buffer: ByteBuffer) throws(RedisError) {
        let status = buffer.withUnsafeReadableBytes { bytes -> Int32 in
            guard let base = bytes.baseAddress, bytes.count > 0 else { return REDIS_OK }
            return redisReaderFeed(reader, base.assumingMemoryBound(to: CChar.self), bytes.count)
        }
        if status != REDIS_OK { throw readerError() }
    }

    /// The next complete reply, or `nil` when more bytes are needed.
    func next() throws(RedisError) -> RedisReply? {
        var raw: UnsafeMutableRawPointer?
        if redisReaderGetReply(reader, &raw) != REDIS_OK { throw readerError() }
        guard let raw else { return nil }
        defer { freeReplyObject(raw) }
        return Self.copy(raw.assumingMemoryBound(to: redisReply.self))
    }

    private func readerError() -> RedisError {
        let text = String(cString: CHiredis_readerErrorString(reader))
        return RedisError(.protocolError, "the server sent bytes that are not valid RESP2 (hiredis: \(text)); the connection is closed")
    }

    private static func copy(_ reply: UnsafeMutablePointer<redisReply>) -> RedisReply {
        let value = reply.pointee
        switch value.type {
        case REDIS_REPLY_STRING:
            guard let str = value.str else { return .bulkString([]) }
            return .bulkString(Array(UnsafeRawBufferPointer(start: str, count: Int(value.len))))
        case REDIS_REPLY_STATUS:
            return .status(text(value))
        case REDIS_REPLY_ERROR:
            return .error(text(value))
        case REDIS_REPLY_INTEGER:
            return .integer(Int64(value.integer))
        case REDIS_REPLY_ARRAY:
            guard let elements = value.element else { return .array([]) }
            var array: [RedisReply] = []
            array.reserveCapacity(Int(value.elements))
            for index in 0..<Int(value.elements) {
                if let element = elements[index] { array.append(copy(element)) } else { array.append(.null) }
            }
            return .array(array)
        default:
            // REDIS_REPLY_NIL, and nothing else exists in RESP2.
            return .null
        }
    }

    private static func text(_ value: redisReply) -> String {
        guard let str = value.str else { return "" }
        return String(decoding: UnsafeRawBufferPointer(start: str, count: Int(value.len)), as: UTF8.self)
    }
}
