import NIOCore

/// One Redis command, encoded once as RESP2 when it is created.
///
/// Arguments are binary safe; build them from strings, bytes or integers:
/// ```swift
/// let command = RedisCommand("PUBLISH", "asgi__group__chat", .bytes(payload))
/// ```
/// Encoding happens in the caller's task, so the event loop only copies finished bytes.
public struct RedisCommand: Sendable {
    /// The command name, for error messages.
    public let name: String
    /// The RESP2 encoding of the whole command.
    internal let encoded: ByteBuffer

    /// Creates a command from its name and arguments.
    public init(_ name: String, _ arguments: RedisArgument...) {
        self.init(name, arguments: arguments)
    }

    /// Creates a command from its name and an array of arguments.
    public init(_ name: String, arguments: [RedisArgument]) {
        self.name = name
        // Every header is a marker, at most ten digits and CRLF, and every bulk string ends in CRLF: 16 covers each.
        var size = 16 + 16 + name.utf8.count
        for argument in arguments { size += argument.count + 16 }
        var buffer = ByteBufferAllocator().buffer(capacity: size)
        // Written through one pointer: a ByteBuffer write per marker and CRLF was most of the cost of a command.
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: size) { output in
            var writer = RESPWriter(output: output)
            writer.header(UInt8(ascii: "*"), arguments.count + 1)
            writer.header(UInt8(ascii: "$"), name.utf8.count)
            writer.bytes(name.utf8)
            writer.crlf()
            for argument in arguments {
                writer.header(UInt8(ascii: "$"), argument.count)
                argument.write(into: &writer)
                writer.crlf()
            }
            return writer.written
        }
        self.encoded = buffer
    }
}

/// Writes RESP into memory sized for it beforehand (``RedisCommand/init(_:arguments:)`` counts it).
struct RESPWriter {
    let output: UnsafeMutableRawBufferPointer
    private(set) var written = 0

    init(output: UnsafeMutableRawBufferPointer) {
        self.output = output
    }

    mutating func byte(_ value: UInt8) {
        output[written] = value
        written += 1
    }

    mutating func crlf() {
        byte(UInt8(ascii: "\r"))
        byte(UInt8(ascii: "\n"))
    }

    /// A marker, a non-negative decimal and CRLF: `*3\r\n`, `$5\r\n`.
    mutating func header(_ marker: UInt8, _ value: Int) {
        byte(marker)
        if value < 10 {
            byte(UInt8(ascii: "0") &+ UInt8(value))
        } else {
            var digits = 0
            var rest = value
            while rest > 0 {
                digits += 1
                rest /= 10
            }
            rest = value
            for position in stride(from: written + digits - 1, through: written, by: -1) {
                output[position] = UInt8(ascii: "0") &+ UInt8(rest % 10)
                rest /= 10
            }
            written += digits
        }
        crlf()
    }

    mutating func bytes(_ source: UnsafeRawBufferPointer) {
        guard source.count > 0 else { return }
        UnsafeMutableRawBufferPointer(rebasing: output[written..<(written + source.count)]).copyMemory(from: source)
        written += source.count
    }

    mutating func bytes(_ text: String.UTF8View) {
        if text.withContiguousStorageIfAvailable({ bytes(UnsafeRawBufferPointer($0)) }) == nil {
            for unit in text { byte(unit) }
        }
    }
}

extension RedisCommand {
    private static let keyless: Set<String> = [
        "PING", "SCAN", "INFO", "CLUSTER", "SENTINEL", "ROLE", "AUTH", "SELECT", "CLIENT", "HELLO", "ASKING",
        "READONLY", "READWRITE", "DBSIZE", "FLUSHALL", "FLUSHDB", "CONFIG", "SCRIPT", "ECHO", "TIME", "COMMAND",
    ]

    /// The key that decides where Redis Cluster serves the command (the first key; for `EVAL` the first
    /// of its keys), or `nil` for a command without one (`PING`, `SCAN`, `CLUSTER ...`).
    ///
    /// Read back from the encoded command, so that only cluster clients pay for it.
    public var routingKey: [UInt8]? {
        if Self.keyless.contains(name.uppercased()) { return nil }
        let arguments = leadingArguments(3)
        if ["EVAL", "EVALSHA", "FCALL"].contains(name.uppercased()) {
            guard arguments.count > 2, let keys = Int(String(decoding: arguments[1], as: UTF8.self)), keys > 0 else { return nil }
            return arguments[2]
        }
        return arguments.first
    }

    /// Up to `limit` arguments after the name, parsed from the RESP encoding.
    private func leadingArguments(_ limit: Int) -> [[UInt8]] {
        var buffer = encoded
        func line() -> String? {
            guard let end = buffer.readableBytesView.firstIndex(of: UInt8(ascii: "\r")) else { return nil }
            let text = buffer.readString(length: end - buffer.readerIndex)
            buffer.moveReaderIndex(forwardBy: 2)
            return text
        }
        guard let header = line(), header.hasPrefix("*"), let count = Int(header.dropFirst()) else { return [] }
        var result: [[UInt8]] = []
        for index in 0..<count {
            guard let sizeLine = line(), sizeLine.hasPrefix("$"), let size = Int(sizeLine.dropFirst()),
                let bytes = buffer.readBytes(length: size)
            else { break }
            buffer.moveReaderIndex(forwardBy: 2)
            if index > 0 { result.append(bytes) }
            if result.count == limit { break }
        }
        return result
    }
}

/// A binary-safe command argument.
public struct RedisArgument: Sendable, ExpressibleByStringLiteral, ExpressibleByIntegerLiteral {
    private enum Storage: Sendable {
        case string(String)
        case bytes([UInt8])
        case buffer(ByteBuffer)
    }

    private let storage: Storage

    /// Text, sent as its UTF-8 bytes.
    public static func string(_ value: String) -> RedisArgument { RedisArgument(storage: .string(value)) }
    /// Raw bytes, sent as they are (NUL bytes included).
    public static func bytes(_ value: [UInt8]) -> RedisArgument { RedisArgument(storage: .bytes(value)) }
    /// Raw bytes from a buffer (its readable part).
    public static func buffer(_ value: ByteBuffer) -> RedisArgument { RedisArgument(storage: .buffer(value)) }
    /// An integer, sent as decimal text as Redis expects.
    public static func integer(_ value: Int) -> RedisArgument { RedisArgument(storage: .string(String(value))) }

    private init(storage: Storage) { self.storage = storage }

    public init(stringLiteral value: String) { self.storage = .string(value) }
    public init(integerLiteral value: Int) { self.storage = .string(String(value)) }

    var count: Int {
        switch storage {
        case .string(let text): text.utf8.count
        case .bytes(let bytes): bytes.count
        case .buffer(let buffer): buffer.readableBytes
        }
    }

    func write(into writer: inout RESPWriter) {
        switch storage {
        case .string(let text): writer.bytes(text.utf8)
        case .bytes(let bytes): bytes.withUnsafeBytes { writer.bytes($0) }
        case .buffer(let source): source.withUnsafeReadableBytes { writer.bytes($0) }
        }
    }
}

