/// A reply from Redis, copied out of hiredis into plain Swift values.
///
/// RESP2 has no separate null array, so a nil bulk string and a nil multi-bulk both decode to ``null``.
public enum RedisReply: Sendable, Hashable {
    /// A simple status such as `OK` or `PONG`.
    case status(String)
    /// An error reply: the server's text, e.g. `WRONGTYPE Operation against a key holding the wrong kind of value`.
    case error(String)
    /// A signed 64-bit integer.
    case integer(Int64)
    /// A bulk string: arbitrary bytes, binary safe.
    case bulkString([UInt8])
    /// A nil bulk string or nil array.
    case null
    /// A multi-bulk reply.
    case array([RedisReply])
}

extension RedisReply {
    /// The bytes of a bulk string or status, if the reply is one.
    public var bytes: [UInt8]? {
        switch self {
        case .bulkString(let bytes): bytes
        case .status(let text): Array(text.utf8)
        default: nil
        }
    }

    /// The reply as UTF-8 text (bulk strings and statuses), or `nil`.
    ///
    /// Invalid UTF-8 is repaired with replacement characters; use ``bytes`` for binary values.
    public var string: String? {
        switch self {
        case .bulkString(let bytes): String(decoding: bytes, as: UTF8.self)
        case .status(let text): text
        default: nil
        }
    }

    /// The integer value of an integer reply, or of a bulk string holding a decimal integer.
    public var integer: Int64? {
        switch self {
        case .integer(let value): value
        case .bulkString(let bytes): Int64(String(decoding: bytes, as: UTF8.self))
        default: nil
        }
    }

    /// The elements of an array reply, or `nil`.
    public var array: [RedisReply]? {
        if case .array(let elements) = self { return elements }
        return nil
    }

    /// Whether the reply is `null`.
    public var isNull: Bool {
        if case .null = self { return true }
        return false
    }
}

extension RedisReply: CustomStringConvertible {
    public var description: String {
        switch self {
        case .status(let text): "+\(text)"
        case .error(let text): "-\(text)"
        case .integer(let value): "(integer) \(value)"
        case .bulkString(let bytes):
            if let text = String(validating: bytes, as: UTF8.self) {
                "\"\(text)\""
            } else {
                "<\(bytes.count) bytes>"
            }
        case .null: "(nil)"
        case .array(let elements): "[" + elements.map(\.description).joined(separator: ", ") + "]"
        }
    }
}

extension [RedisReply] {
    /// The replies of a pipeline, or its first error reply thrown as a ``RedisError`` naming `what`.
    public func checked(_ what: String) throws(RedisError) -> [RedisReply] {
        for reply in self {
            if case .error(let text) = reply { throw RedisError.fromErrorReply(text, command: what) }
        }
        return self
    }
}
