import OrderedCollections

/// msgpack as channels_redis writes and reads it: Python `msgpack` 1.x defaults (`use_bin_type=True`),
/// so encoding gives exactly the bytes Python gives, and decoding accepts everything Python can send in a
/// message.
///
/// Encoding rules: str as msgpack str (fixstr, str8, str16, str32), bytes as bin, Double as float64,
/// integers in the smallest form (unsigned forms for non-negative values), arrays and maps in the smallest
/// header. Decoding is bounded by ``Limits``: every length is checked against the bytes that remain before
/// anything is allocated, so hostile input costs at most its own size.
public enum MessagePack {
    /// Bounds for decoding untrusted bytes.
    public struct Limits: Sendable, Hashable {
        /// The largest payload accepted, in bytes.
        public var maxSize: Int
        /// The deepest nesting of arrays and maps accepted.
        public var maxDepth: Int

        public init(maxSize: Int = 16 * 1024 * 1024, maxDepth: Int = 64) {
            self.maxSize = maxSize
            self.maxDepth = maxDepth
        }
    }

    // MARK: - Encoding

    /// Encodes a message as a msgpack map.
    public static func encode(_ message: Message) -> [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity(64)
        encode(map: message.fields, into: &output)
        return output
    }

    /// Encodes a message into the end of `output`.
    public static func encode(_ message: Message, into output: inout [UInt8]) {
        encode(map: message.fields, into: &output)
    }

    /// Encodes a message with one more field whose value is already msgpack (`encodedValue`), at the end of
    /// the map: for a value many messages share, encoded once. `message` must not hold `key`.
    public static func encode(_ message: Message, adding key: String, encodedValue: [UInt8], into output: inout [UInt8]) {
        encode(mapHeader: message.fields.count + 1, into: &output)
        encode(fields: message.fields, into: &output)
        encode(.string(key), into: &output)
        output.append(contentsOf: encodedValue)
    }

    /// Encodes any value.
    public static func encode(_ value: MessageValue) -> [UInt8] {
        var output: [UInt8] = []
        encode(value, into: &output)
        return output
    }

    static func encode(_ value: MessageValue, into output: inout [UInt8]) {
        switch value {
        case .null: output.append(0xc0)
        case .bool(let flag): output.append(flag ? 0xc3 : 0xc2)
        case .int(let number): encode(int: number, into: &output)
        case .double(let number):
            output.append(0xcb)
            append(number.bitPattern, into: &output)
        case .string(let text):
            let count = text.utf8.count
            if count < 32 {
                output.append(0xa0 | UInt8(count))
            } else if count <= 0xff {
                output.append(0xd9)
                output.append(UInt8(count))
            } else if count <= 0xffff {
                output.append(0xda)
                append(UInt16(count), into: &output)
            } else {
                output.append(0xdb)
                append(UInt32(truncatingIfNeeded: count), into: &output)
            }
            output.append(contentsOf: text.utf8)
        case .bytes(let bytes):
            if bytes.count <= 0xff {
                output.append(0xc4)
                output.append(UInt8(bytes.count))
            } else if bytes.count <= 0xffff {
                output.append(0xc5)
                append(UInt16(bytes.count), into: &output)
            } else {
                output.append(0xc6)
                append(UInt32(truncatingIfNeeded: bytes.count), into: &output)
            }
            output.append(contentsOf: bytes)
        case .array(let elements):
            if elements.count < 16 {
                output.append(0x90 | UInt8(elements.count))
            } else if elements.count <= 0xffff {
                output.append(0xdc)
                append(UInt16(elements.count), into: &output)
            } else {
                output.append(0xdd)
                append(UInt32(truncatingIfNeeded: elements.count), into: &output)
            }
            for element in elements { encode(element, into: &output) }
        case .map(let map):
            encode(map: map, into: &output)
        }
    }

    private static func encode(map: OrderedDictionary<String, MessageValue>, into output: inout [UInt8]) {
        encode(mapHeader: map.count, into: &output)
        encode(fields: map, into: &output)
    }

    private static func encode(mapHeader count: Int, into output: inout [UInt8]) {
        if count < 16 {
            output.append(0x80 | UInt8(count))
        } else if count <= 0xffff {
            output.append(0xde)
            append(UInt16(count), into: &output)
        } else {
            output.append(0xdf)
            append(UInt32(truncatingIfNeeded: count), into: &output)
        }
    }

    private static func encode(fields map: OrderedDictionary<String, MessageValue>, into output: inout [UInt8]) {
        for (key, value) in map {
            encode(.string(key), into: &output)
            encode(value, into: &output)
        }
    }

    private static func encode(int value: Int64, into output: inout [UInt8]) {
        if value >= 0 {
            if value < 128 {
                output.append(UInt8(value))
            } else if value <= 0xff {
                output.append(0xcc)
                output.append(UInt8(value))
            } else if value <= 0xffff {
                output.append(0xcd)
                append(UInt16(value), into: &output)
            } else if value <= 0xffff_ffff {
                output.append(0xce)
                append(UInt32(value), into: &output)
            } else {
                output.append(0xcf)
                append(UInt64(value), into: &output)
            }
        } else if value >= -32 {
            output.append(UInt8(bitPattern: Int8(value)))
        } else if value >= -128 {
            output.append(0xd0)
            output.append(UInt8(bitPattern: Int8(value)))
        } else if value >= -32768 {
            output.append(0xd1)
            append(UInt16(bitPattern: Int16(value)), into: &output)
        } else if value >= -2_147_483_648 {
            output.append(0xd2)
            append(UInt32(bitPattern: Int32(value)), into: &output)
        } else {
            output.append(0xd3)
            append(UInt64(bitPattern: value), into: &output)
        }
    }

    @inline(__always)
    private static func append<T: FixedWidthInteger>(_ value: T, into output: inout [UInt8]) {
        var bigEndian = value.bigEndian
        withUnsafeBytes(of: &bigEndian) { output.append(contentsOf: $0) }
    }

    // MARK: - Decoding

    /// Decodes a channel layer message: a msgpack map with string keys.
    /// - Throws: ``ProtocolError`` (``ProtocolError/Code/invalidMessagePack``) saying what is wrong and where.
    public static func decodeMessage(_ bytes: some Collection<UInt8>, limits: Limits = Limits()) throws(ProtocolError) -> Message {
        guard case .map(let fields) = try decode(bytes, limits: limits) else {
            throw ProtocolError(.invalidMessage, "a channel layer message must be a msgpack map")
        }
        return Message(fields)
    }

    /// Decodes a channel layer message, leaving out the value of `key`: that value is checked to be
    /// well-formed msgpack and handed back as its raw bytes (nil when the map has no such key).
    ///
    /// The core layer's receiver keys what it resolved from a message's `__asgi_channel__` list by those
    /// bytes, so a group's list of names is not decoded again for each message.
    /// - Throws: ``ProtocolError`` as ``decodeMessage(_:limits:)``.
    public static func decodeMessage(_ bytes: some Collection<UInt8>, settingAside key: String, limits: Limits = Limits()) throws(ProtocolError) -> (message: Message, setAside: [UInt8]?) {
        let (value, setAside) = try decode(bytes, limits, settingAside: key)
        guard case .map(let fields) = value else {
            throw ProtocolError(.invalidMessage, "a channel layer message must be a msgpack map")
        }
        return (Message(fields), setAside)
    }

    /// Decodes exactly one msgpack value that spans all of `bytes`.
    public static func decode(_ bytes: some Collection<UInt8>, limits: Limits = Limits()) throws(ProtocolError) -> MessageValue {
        try decode(bytes, limits, settingAside: nil).value
    }

    private static func decode(
        _ bytes: some Collection<UInt8>, _ limits: Limits, settingAside key: String?
    ) throws(ProtocolError) -> (value: MessageValue, setAside: [UInt8]?) {
        guard bytes.count <= limits.maxSize else {
            throw ProtocolError(.invalidMessagePack, "msgpack payload of \(bytes.count) bytes exceeds the limit of \(limits.maxSize)")
        }
        let result: Result<(MessageValue, [UInt8]?), ProtocolError>
        if let direct = bytes.withContiguousStorageIfAvailable({ buffer in Self.decodeAll(UnsafeRawBufferPointer(buffer), limits, settingAside: key) }) {
            result = direct
        } else {
            result = Array(bytes).withUnsafeBytes { Self.decodeAll($0, limits, settingAside: key) }
        }
        return try result.get()
    }

    /// One value over all of `buffer`; with a `key`, the value of that key in a top-level map is stepped over
    /// and handed back as its bytes.
    private static func decodeAll(_ buffer: UnsafeRawBufferPointer, _ limits: Limits, settingAside key: String?) -> Result<(MessageValue, [UInt8]?), ProtocolError> {
        var reader = Reader(buffer: buffer, maxDepth: limits.maxDepth)
        do throws(ProtocolError) {
            let value: MessageValue
            var setAside: [UInt8]?
            switch (key, try reader.peek()) {
            case (let key?, 0x80...0x8f), (let key?, 0xde), (let key?, 0xdf):
                let count = try reader.mapCount()
                value = try reader.readMap(count, depth: 0) { field, reader throws(ProtocolError) in
                    guard field == key else { return false }
                    let start = reader.offset
                    try reader.skipValue(depth: 1)
                    setAside = Array(UnsafeRawBufferPointer(rebasing: buffer[start..<reader.offset]))
                    return true
                }
            default:
                value = try reader.readValue(depth: 0)
            }
            guard reader.offset == buffer.count else {
                throw ProtocolError(.invalidMessagePack, "\(buffer.count - reader.offset) extra bytes after the msgpack value")
            }
            return .success((value, setAside))
        } catch {
            return .failure(error)
        }
    }

    private struct Reader {
        let buffer: UnsafeRawBufferPointer
        let maxDepth: Int
        var offset = 0

        init(buffer: UnsafeRawBufferPointer, maxDepth: Int) {
            self.buffer = buffer
            self.maxDepth = maxDepth
        }

        var remaining: Int { buffer.count - offset }

        func failure(_ what: String) -> ProtocolError {
            ProtocolError(.invalidMessagePack, "invalid msgpack at byte \(offset): \(what)")
        }

        mutating func byte() throws(ProtocolError) -> UInt8 {
            guard offset < buffer.count else { throw failure("unexpected end of data") }
            defer { offset += 1 }
            return buffer[offset]
        }

        mutating func integer<T: FixedWidthInteger>(_: T.Type) throws(ProtocolError) -> T {
            let size = MemoryLayout<T>.size
            guard remaining >= size else { throw failure("unexpected end of data in a \(size)-byte number") }
            var value: T = 0
            for index in 0..<size { value = value << 8 | T(buffer[offset + index]) }
            offset += size
            return value
        }

        /// Reads `count` raw bytes, after checking they are there.
        mutating func raw(_ count: Int) throws(ProtocolError) -> UnsafeRawBufferPointer {
            guard count <= remaining else {
                throw failure("a length of \(count) bytes runs past the end (\(remaining) left)")
            }
            defer { offset += count }
            return UnsafeRawBufferPointer(rebasing: buffer[offset..<offset + count])
        }

        mutating func string(_ count: Int) throws(ProtocolError) -> String {
            let bytes = try raw(count)
            guard let text = String(validating: bytes, as: UTF8.self) else { throw failure("a str is not valid UTF-8") }
            return text
        }

        mutating func readValue(depth: Int) throws(ProtocolError) -> MessageValue {
            let head = try byte()
            switch head {
            case 0x00...0x7f: return .int(Int64(head))
            case 0xe0...0xff: return .int(Int64(Int8(bitPattern: head)))
            case 0x80...0x8f: return try readMap(Int(head & 0x0f), depth: depth)
            case 0x90...0x9f: return try readArray(Int(head & 0x0f), depth: depth)
            case 0xa0...0xbf: return .string(try string(Int(head & 0x1f)))
            case 0xc0: return .null
            case 0xc2: return .bool(false)
            case 0xc3: return .bool(true)
            case 0xc4: return .bytes(Array(try raw(Int(try integer(UInt8.self)))))
            case 0xc5: return .bytes(Array(try raw(Int(try integer(UInt16.self)))))
            case 0xc6: return .bytes(Array(try raw(Int(try integer(UInt32.self)))))
            case 0xca: return .double(Double(Float(bitPattern: try integer(UInt32.self))))
            case 0xcb: return .double(Double(bitPattern: try integer(UInt64.self)))
            case 0xcc: return .int(Int64(try integer(UInt8.self)))
            case 0xcd: return .int(Int64(try integer(UInt16.self)))
            case 0xce: return .int(Int64(try integer(UInt32.self)))
            case 0xcf:
                let value = try integer(UInt64.self)
                guard let signed = Int64(exactly: value) else { throw failure("unsigned integer \(value) does not fit in 64-bit signed") }
                return .int(signed)
            case 0xd0: return .int(Int64(Int8(bitPattern: try integer(UInt8.self))))
            case 0xd1: return .int(Int64(Int16(bitPattern: try integer(UInt16.self))))
            case 0xd2: return .int(Int64(Int32(bitPattern: try integer(UInt32.self))))
            case 0xd3: return .int(Int64(bitPattern: try integer(UInt64.self)))
            case 0xd9: return .string(try string(Int(try integer(UInt8.self))))
            case 0xda: return .string(try string(Int(try integer(UInt16.self))))
            case 0xdb: return .string(try string(Int(try integer(UInt32.self))))
            case 0xdc: return try readArray(Int(try integer(UInt16.self)), depth: depth)
            case 0xdd: return try readArray(Int(try integer(UInt32.self)), depth: depth)
            case 0xde: return try readMap(Int(try integer(UInt16.self)), depth: depth)
            case 0xdf: return try readMap(Int(try integer(UInt32.self)), depth: depth)
            case 0xd4...0xd8, 0xc7...0xc9:
                throw failure("msgpack extension types (0x\(String(head, radix: 16))) are not part of a channel layer message")
            default:
                throw failure("0xc1 is never used in msgpack")
            }
        }

        mutating func readArray(_ count: Int, depth: Int) throws(ProtocolError) -> MessageValue {
            guard depth < maxDepth else { throw failure("nesting deeper than \(maxDepth)") }
            // Each element takes at least one byte: a count larger than what is left is a lie.
            guard count <= remaining else { throw failure("an array of \(count) elements with \(remaining) bytes left") }
            var elements: [MessageValue] = []
            elements.reserveCapacity(count)
            for _ in 0..<count { elements.append(try readValue(depth: depth + 1)) }
            return .array(elements)
        }

        mutating func readMap(_ count: Int, depth: Int) throws(ProtocolError) -> MessageValue {
            try readMap(count, depth: depth) { _, _ throws(ProtocolError) in false }
        }

        /// Reads a map's entries; `consume` may take an entry's value itself (returning true), which leaves
        /// the entry out of the map.
        mutating func readMap(
            _ count: Int, depth: Int, consuming consume: (String, inout Reader) throws(ProtocolError) -> Bool
        ) throws(ProtocolError) -> MessageValue {
            guard depth < maxDepth else { throw failure("nesting deeper than \(maxDepth)") }
            guard count <= remaining / 2 else { throw failure("a map of \(count) entries with \(remaining) bytes left") }
            var map = OrderedDictionary<String, MessageValue>(minimumCapacity: count)
            for _ in 0..<count {
                guard case .string(let key) = try readValue(depth: depth + 1) else {
                    throw failure("a map key is not a string")
                }
                if try consume(key, &self) { continue }
                map[key] = try readValue(depth: depth + 1)
            }
            return .map(map)
        }

        func peek() throws(ProtocolError) -> UInt8 {
            guard offset < buffer.count else { throw failure("unexpected end of data") }
            return buffer[offset]
        }

        /// Reads a map's header (the caller saw a map head with ``peek()``).
        mutating func mapCount() throws(ProtocolError) -> Int {
            let head = try byte()
            switch head {
            case 0xde: return Int(try integer(UInt16.self))
            case 0xdf: return Int(try integer(UInt32.self))
            default: return Int(head & 0x0f)
            }
        }

        /// Steps over one value, checking its lengths, depth and types as ``readValue(depth:)`` does, without
        /// building it. Strings are not checked for UTF-8 here: whoever uses the value decodes it in full.
        mutating func skipValue(depth: Int) throws(ProtocolError) {
            let head = try byte()
            var elements = 0
            switch head {
            case 0x00...0x7f, 0xe0...0xff, 0xc0, 0xc2, 0xc3: return
            case 0x80...0x8f: elements = 2 * Int(head & 0x0f)
            case 0x90...0x9f: elements = Int(head & 0x0f)
            case 0xa0...0xbf: _ = try raw(Int(head & 0x1f)); return
            case 0xc4: _ = try raw(Int(try integer(UInt8.self))); return
            case 0xc5: _ = try raw(Int(try integer(UInt16.self))); return
            case 0xc6: _ = try raw(Int(try integer(UInt32.self))); return
            case 0xca, 0xce, 0xd2: _ = try raw(4); return
            case 0xcb, 0xd3: _ = try raw(8); return
            case 0xcc, 0xd0: _ = try raw(1); return
            case 0xcd, 0xd1: _ = try raw(2); return
            case 0xcf:
                let value = try integer(UInt64.self)
                guard Int64(exactly: value) != nil else { throw failure("unsigned integer \(value) does not fit in 64-bit signed") }
                return
            case 0xd9: _ = try raw(Int(try integer(UInt8.self))); return
            case 0xda: _ = try raw(Int(try integer(UInt16.self))); return
            case 0xdb: _ = try raw(Int(try integer(UInt32.self))); return
            case 0xdc: elements = Int(try integer(UInt16.self))
            case 0xdd: elements = Int(try integer(UInt32.self))
            case 0xde: elements = 2 * Int(try integer(UInt16.self))
            case 0xdf: elements = 2 * Int(try integer(UInt32.self))
            case 0xd4...0xd8, 0xc7...0xc9:
                throw failure("msgpack extension types (0x\(String(head, radix: 16))) are not part of a channel layer message")
            default:
                throw failure("0xc1 is never used in msgpack")
            }
            guard depth < maxDepth else { throw failure("nesting deeper than \(maxDepth)") }
            guard elements <= remaining else { throw failure("\(elements) elements with \(remaining) bytes left") }
            for _ in 0..<elements { try skipValue(depth: depth + 1) }
        }
    }
}
