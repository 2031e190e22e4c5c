import OrderedCollections

/// JSON text to and from ``MessageValue``, bounded for untrusted input.
///
/// Numbers without a fraction or exponent that fit in 64 bits become `.int`, every other number `.double`.
/// Objects keep their key order; a repeated key keeps its last value, as Python's `json` does.
public enum JSON {
    /// Bounds for parsing untrusted text.
    public struct Limits: Sendable, Hashable {
        public var maxSize: Int
        public var maxDepth: Int
        public init(maxSize: Int = 1024 * 1024, maxDepth: Int = 64) {
            self.maxSize = maxSize
            self.maxDepth = maxDepth
        }
    }

    /// Parses UTF-8 JSON text.
    public static func parse(_ text: String, limits: Limits = Limits()) throws(ProtocolError) -> MessageValue {
        var text = text
        let result = text.withUTF8 { bytes in parse(UnsafeRawBufferPointer(bytes), limits: limits) }
        return try result.get()
    }

    /// Parses UTF-8 JSON bytes.
    public static func parse(bytes: [UInt8], limits: Limits = Limits()) throws(ProtocolError) -> MessageValue {
        try bytes.withUnsafeBytes { parse($0, limits: limits) }.get()
    }

    private static func parse(_ buffer: UnsafeRawBufferPointer, limits: Limits) -> Result<MessageValue, ProtocolError> {
        guard buffer.count <= limits.maxSize else {
            return .failure(ProtocolError(.invalidJSON, "JSON text of \(buffer.count) bytes exceeds the limit of \(limits.maxSize)"))
        }
        var parser = Parser(buffer: buffer, maxDepth: limits.maxDepth)
        do throws(ProtocolError) {
            parser.skipWhitespace()
            let value = try parser.value(depth: 0)
            parser.skipWhitespace()
            guard parser.offset == buffer.count else { throw parser.failure("unexpected text after the JSON value") }
            return .success(value)
        } catch {
            return .failure(error)
        }
    }

    /// Serialises a value as compact JSON, the way Python's `json.dumps(separators=(",", ":"))` would.
    /// - Throws: ``ProtocolError/Code/unrepresentable`` for bytes, NaN and infinities.
    public static func serialize(_ value: MessageValue) throws(ProtocolError) -> String {
        var output = ""
        try write(value, to: &output)
        return output
    }

    private static func write(_ value: MessageValue, to output: inout String) throws(ProtocolError) {
        switch value {
        case .null: output += "null"
        case .bool(let flag): output += flag ? "true" : "false"
        case .int(let number): output += String(number)
        case .double(let number):
            guard number.isFinite else { throw ProtocolError(.unrepresentable, "JSON cannot carry \(number)") }
            if number == number.rounded(), abs(number) < 1e15 {
                output += String(Int64(number)) + ".0"
            } else {
                output += "\(number)"
            }
        case .string(let text): writeString(text, to: &output)
        case .bytes:
            throw ProtocolError(.unrepresentable, "JSON cannot carry bytes; send them in a binary frame or encode them as text")
        case .array(let elements):
            output += "["
            for (index, element) in elements.enumerated() {
                if index > 0 { output += "," }
                try write(element, to: &output)
            }
            output += "]"
        case .map(let map):
            output += "{"
            for (index, (key, element)) in map.enumerated() {
                if index > 0 { output += "," }
                writeString(key, to: &output)
                output += ":"
                try write(element, to: &output)
            }
            output += "}"
        }
    }

    private static func writeString(_ text: String, to output: inout String) {
        output += "\""
        // Most strings need no escaping: append them whole instead of scalar by scalar (the fan-out hot path
        // encodes one frame per member).
        if !needsEscaping(text) {
            output += text
            output += "\""
            return
        }
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": output += "\\\""
            case "\\": output += "\\\\"
            case "\n": output += "\\n"
            case "\r": output += "\\r"
            case "\t": output += "\\t"
            case "\u{08}": output += "\\b"
            case "\u{0C}": output += "\\f"
            case "\u{2028}": output += "\\u2028"
            case "\u{2029}": output += "\\u2029"
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    output += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    output.unicodeScalars.append(scalar)
                }
            }
        }
        output += "\""
    }

    /// Whether `text` holds a control character, a quote, a backslash, or U+2028/U+2029 (E2 80 A8/A9).
    private static func needsEscaping(_ text: String) -> Bool {
        var text = text
        return text.withUTF8 { bytes in
            for byte in bytes where byte < 0x20 || byte == 0x22 || byte == 0x5C || byte == 0xE2 {
                return true
            }
            return false
        }
    }

    private struct Parser {
        let buffer: UnsafeRawBufferPointer
        let maxDepth: Int
        var offset = 0

        init(buffer: UnsafeRawBufferPointer, maxDepth: Int) {
            self.buffer = buffer
            self.maxDepth = maxDepth
        }

        func failure(_ what: String) -> ProtocolError {
            ProtocolError(.invalidJSON, "invalid JSON at byte \(offset): \(what)")
        }

        var current: UInt8? { offset < buffer.count ? buffer[offset] : nil }

        mutating func skipWhitespace() {
            while let byte = current, byte == 0x20 || byte == 0x0a || byte == 0x0d || byte == 0x09 { offset += 1 }
        }

        mutating func expect(_ literal: StaticString, value: MessageValue) throws(ProtocolError) -> MessageValue {
            let count = literal.utf8CodeUnitCount
            guard buffer.count - offset >= count else { throw failure("unexpected end of text") }
            for index in 0..<count where buffer[offset + index] != literal.utf8Start[index] {
                throw failure("unexpected character")
            }
            offset += count
            return value
        }

        mutating func value(depth: Int) throws(ProtocolError) -> MessageValue {
            guard let byte = current else { throw failure("unexpected end of text") }
            switch byte {
            case UInt8(ascii: "{"): return try object(depth: depth)
            case UInt8(ascii: "["): return try array(depth: depth)
            case UInt8(ascii: "\""): return .string(try string())
            case UInt8(ascii: "t"): return try expect("true", value: .bool(true))
            case UInt8(ascii: "f"): return try expect("false", value: .bool(false))
            case UInt8(ascii: "n"): return try expect("null", value: .null)
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try number()
            default: throw failure("unexpected character '\(Unicode.Scalar(byte))'")
            }
        }

        mutating func object(depth: Int) throws(ProtocolError) -> MessageValue {
            guard depth < maxDepth else { throw failure("nesting deeper than \(maxDepth)") }
            offset += 1
            var map = OrderedDictionary<String, MessageValue>()
            skipWhitespace()
            if current == UInt8(ascii: "}") {
                offset += 1
                return .map(map)
            }
            while true {
                skipWhitespace()
                guard current == UInt8(ascii: "\"") else { throw failure("an object key must be a string") }
                let key = try string()
                skipWhitespace()
                guard current == UInt8(ascii: ":") else { throw failure("expected ':' after an object key") }
                offset += 1
                skipWhitespace()
                map[key] = try value(depth: depth + 1)
                skipWhitespace()
                switch current {
                case UInt8(ascii: ","): offset += 1
                case UInt8(ascii: "}"):
                    offset += 1
                    return .map(map)
                default: throw failure("expected ',' or '}' in an object")
                }
            }
        }

        mutating func array(depth: Int) throws(ProtocolError) -> MessageValue {
            guard depth < maxDepth else { throw failure("nesting deeper than \(maxDepth)") }
            offset += 1
            var elements: [MessageValue] = []
            skipWhitespace()
            if current == UInt8(ascii: "]") {
                offset += 1
                return .array(elements)
            }
            while true {
                skipWhitespace()
                elements.append(try value(depth: depth + 1))
                skipWhitespace()
                switch current {
                case UInt8(ascii: ","): offset += 1
                case UInt8(ascii: "]"):
                    offset += 1
                    return .array(elements)
                default: throw failure("expected ',' or ']' in an array")
                }
            }
        }

        mutating func string() throws(ProtocolError) -> String {
            offset += 1
            var bytes: [UInt8] = []
            while true {
                guard let byte = current else { throw failure("unterminated string") }
                offset += 1
                switch byte {
                case UInt8(ascii: "\""):
                    guard let text = String(validating: bytes, as: UTF8.self) else { throw failure("a string is not valid UTF-8") }
                    return text
                case UInt8(ascii: "\\"):
                    guard let escape = current else { throw failure("unterminated escape") }
                    offset += 1
                    switch escape {
                    case UInt8(ascii: "\""): bytes.append(0x22)
                    case UInt8(ascii: "\\"): bytes.append(0x5c)
                    case UInt8(ascii: "/"): bytes.append(0x2f)
                    case UInt8(ascii: "b"): bytes.append(0x08)
                    case UInt8(ascii: "f"): bytes.append(0x0c)
                    case UInt8(ascii: "n"): bytes.append(0x0a)
                    case UInt8(ascii: "r"): bytes.append(0x0d)
                    case UInt8(ascii: "t"): bytes.append(0x09)
                    case UInt8(ascii: "u"):
                        var scalar = try hex4()
                        if (0xd800..<0xdc00).contains(scalar) {
                            guard current == UInt8(ascii: "\\"), offset + 1 < buffer.count, buffer[offset + 1] == UInt8(ascii: "u") else {
                                throw failure("a high surrogate without its low surrogate")
                            }
                            offset += 2
                            let low = try hex4()
                            guard (0xdc00..<0xe000).contains(low) else { throw failure("an invalid low surrogate") }
                            scalar = 0x10000 + ((scalar - 0xd800) << 10) + (low - 0xdc00)
                        } else if (0xdc00..<0xe000).contains(scalar) {
                            throw failure("a lone low surrogate")
                        }
                        guard let unicode = Unicode.Scalar(scalar) else { throw failure("an invalid \\u escape") }
                        bytes.append(contentsOf: Array(String(Character(unicode)).utf8))
                    default:
                        throw failure("an invalid escape")
                    }
                case 0x00..<0x20:
                    throw failure("a control character in a string")
                default:
                    bytes.append(byte)
                }
            }
        }

        mutating func hex4() throws(ProtocolError) -> UInt32 {
            guard buffer.count - offset >= 4 else { throw failure("a short \\u escape") }
            var value: UInt32 = 0
            for _ in 0..<4 {
                let byte = buffer[offset]
                let digit: UInt32
                switch byte {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(byte - UInt8(ascii: "0"))
                case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(byte - UInt8(ascii: "a") + 10)
                case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(byte - UInt8(ascii: "A") + 10)
                default: throw failure("a bad hex digit in a \\u escape")
                }
                value = value << 4 | digit
                offset += 1
            }
            return value
        }

        mutating func number() throws(ProtocolError) -> MessageValue {
            let start = offset
            var isInteger = true
            if current == UInt8(ascii: "-") { offset += 1 }
            guard let first = current, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(first) else { throw failure("a bad number") }
            if first == UInt8(ascii: "0") {
                offset += 1
            } else {
                while let byte = current, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) { offset += 1 }
            }
            if current == UInt8(ascii: ".") {
                isInteger = false
                offset += 1
                guard let byte = current, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) else { throw failure("a bad fraction") }
                while let byte = current, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) { offset += 1 }
            }
            if current == UInt8(ascii: "e") || current == UInt8(ascii: "E") {
                isInteger = false
                offset += 1
                if current == UInt8(ascii: "+") || current == UInt8(ascii: "-") { offset += 1 }
                guard let byte = current, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) else { throw failure("a bad exponent") }
                while let byte = current, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) { offset += 1 }
            }
            let text = String(decoding: UnsafeRawBufferPointer(rebasing: buffer[start..<offset]), as: UTF8.self)
            if isInteger, let value = Int64(text) { return .int(value) }
            guard let value = Double(text), value.isFinite else { throw failure("a number out of range") }
            return .double(value)
        }
    }
}
