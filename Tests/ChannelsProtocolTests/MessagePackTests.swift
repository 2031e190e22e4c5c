import ChannelsProtocol
import OrderedCollections
import Testing

func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format2: $0) }.joined() }

extension String {
    init(format2 byte: UInt8) {
        let digits = Array("0123456789abcdef")
        self = String([digits[Int(byte >> 4)], digits[Int(byte & 0x0f)]])
    }
}

func bytes(hex: String) -> [UInt8] {
    var result: [UInt8] = []
    var iterator = hex.makeIterator()
    while let high = iterator.next(), let low = iterator.next() {
        result.append(UInt8(String([high, low]), radix: 16)!)
    }
    return result
}

@Suite struct MessagePackTests {
    /// The vectors from channels-redis-wire.md, produced by Python msgpack 1.x.
    @Test func chatMessageVector() throws {
        let message: Message = ["type": "chat.message", "message": "hi"]
        let encoded = MessagePack.encode(message)
        #expect(hex(encoded) == "82a474797065ac636861742e6d657373616765a76d657373616765a26869")
        #expect(try MessagePack.decodeMessage(encoded) == message)
    }

    @Test func everyValueKindVector() throws {
        let message: Message = [
            "type": "x", "n": 1, "f": 1.5, "b": .bytes([0, 1]), "none": nil, "t": true,
            "l": [1, "a"], "d": ["k": "v"], "big": .int(1 << 40), "neg": -1, "tup": [1, 2],
        ]
        let expected =
            "8ba474797065a178a16e01a166cb3ff8000000000000a162c4020001a46e6f6e65c0a174c3a16c9201a161a16481a16ba176a3626967cf0000010000000000a36e6567ffa3747570920102"
        #expect(hex(MessagePack.encode(message)) == expected)
        let decoded = try MessagePack.decodeMessage(bytes(hex: expected))
        #expect(decoded == message)
        #expect(Array(decoded.fields.keys) == ["type", "n", "f", "b", "none", "t", "l", "d", "big", "neg", "tup"])
    }

    /// Boundaries where Python switches encodings.
    @Test(arguments: [
        (Int64(0), "00"), (127, "7f"), (128, "cc80"), (255, "ccff"), (256, "cd0100"), (65535, "cdffff"),
        (65536, "ce00010000"), (4_294_967_295, "ceffffffff"), (4_294_967_296, "cf0000000100000000"),
        (-1, "ff"), (-32, "e0"), (-33, "d0df"), (-128, "d080"), (-129, "d1ff7f"), (-32768, "d18000"),
        (-32769, "d2ffff7fff"), (-2_147_483_648, "d280000000"), (-2_147_483_649, "d3ffffffff7fffffff"),
        (Int64.max, "cf7fffffffffffffff"), (Int64.min, "d38000000000000000"),
    ])
    func integerEncodings(value: Int64, expected: String) throws {
        #expect(hex(MessagePack.encode(.int(value))) == expected)
        #expect(try MessagePack.decode(bytes(hex: expected)) == .int(value))
    }

    @Test func stringBytesArrayAndMapHeaders() throws {
        let cases: [(MessageValue, String)] = [
            (.string(String(repeating: "a", count: 31)), "bf"),
            (.string(String(repeating: "a", count: 32)), "d920"),
            (.string(String(repeating: "a", count: 256)), "da0100"),
            (.string(String(repeating: "a", count: 65536)), "db00010000"),
            (.bytes(Array(repeating: 1, count: 256)), "c50100"),
            (.bytes(Array(repeating: 1, count: 65536)), "c600010000"),
            (.array(Array(repeating: .null, count: 15)), "9f"),
            (.array(Array(repeating: .null, count: 16)), "dc0010"),
            (.map(.init(uniqueKeysWithValues: (0..<16).map { ("k\($0)", MessageValue.null) })), "de0010"),
        ]
        for (value, prefix) in cases {
            let encoded = MessagePack.encode(value)
            #expect(hex(Array(encoded.prefix(prefix.count / 2))) == prefix)
            #expect(try MessagePack.decode(encoded) == value)
        }
    }

    /// A field whose value was encoded once is the same bytes as the message encoded with it, also where the
    /// added field moves the map past 15 entries (a longer header).
    @Test(arguments: [2, 15, 16])
    func aFieldAddedAlreadyEncodedIsTheSameAsEncodingItWithTheMessage(fieldCount: Int) throws {
        var message = Message()
        for index in 0..<(fieldCount - 1) { message["k\(index)"] = .string("v\(index)") }
        let channels: MessageValue = .array([.string("specific.a!1"), .string("specific.a!2")])
        var output: [UInt8] = [0xff]
        MessagePack.encode(message, adding: "__asgi_channel__", encodedValue: MessagePack.encode(channels), into: &output)
        var whole = message
        whole["__asgi_channel__"] = channels
        #expect(Array(output.dropFirst()) == MessagePack.encode(whole))
        #expect(output.first == 0xff, "appended after what the output held")
    }

    @Test func decodesFloat32AsDouble() throws {
        #expect(try MessagePack.decode(bytes(hex: "ca3fc00000")) == .double(1.5))
    }

    @Test(arguments: [
        ("", "unexpected end of data"),
        ("c1", "0xc1 is never used"),
        ("d6ff00000000", "extension types"),
        ("a5616263", "runs past the end"),
        ("dbffffffff", "runs past the end"),
        ("ddffffffff", "an array of 4294967295 elements"),
        ("dfffffffff", "a map of 4294967295 entries"),
        ("810102", "a map key is not a string"),
        ("a2c328", "not valid UTF-8"),
        ("cfffffffffffffffff", "does not fit in 64-bit signed"),
        ("c0c0", "extra bytes"),
        ("cd01", "unexpected end of data"),
    ])
    func hostileBytesFailWithAReason(input: String, reason: String) {
        #expect {
            try MessagePack.decode(bytes(hex: input))
        } throws: { error in
            guard let error = error as? ProtocolError else { return false }
            return error.code == .invalidMessagePack && error.message.contains(reason)
        }
    }

    @Test func depthAndSizeAreBounded() {
        let deep = [UInt8](repeating: 0x91, count: 100_000) + [0xc0]
        #expect {
            try MessagePack.decode(deep)
        } throws: { error in
            (error as? ProtocolError)?.message.contains("nesting deeper than 64") == true
        }
        #expect {
            try MessagePack.decode([UInt8](repeating: 0xc0, count: 2000), limits: .init(maxSize: 1000))
        } throws: { error in
            (error as? ProtocolError)?.message.contains("exceeds the limit of 1000") == true
        }
    }

    @Test func messagesMustBeMaps() {
        #expect {
            try MessagePack.decodeMessage([0x91, 0x01])
        } throws: { error in
            (error as? ProtocolError)?.code == .invalidMessage
        }
    }

    /// A value set aside comes back as exactly the bytes that encode it, and the message is the rest.
    @Test func aValueSetAsideComesBackAsItsBytes() throws {
        let list: MessageValue = .array((0..<20).map { .string("specific.abc!\($0)") })
        var message: Message = ["type": "chat.message", "text": "hi", "nested": ["deep": [1, ["k": .bytes([1, 2])]]]]
        message["__asgi_channel__"] = list
        let decoded = try MessagePack.decodeMessage(MessagePack.encode(message), settingAside: "__asgi_channel__")
        #expect(decoded.setAside == MessagePack.encode(list))
        #expect(decoded.message == ["type": "chat.message", "text": "hi", "nested": ["deep": [1, ["k": .bytes([1, 2])]]]])
        #expect(try MessagePack.decode(try #require(decoded.setAside)) == list)

        let bare: Message = ["type": "x"]
        let without = try MessagePack.decodeMessage(MessagePack.encode(bare), settingAside: "__asgi_channel__")
        #expect(without.setAside == nil)
        #expect(without.message == ["type": "x"])
    }

    /// The value set aside is stepped over with every check but UTF-8 (its user decodes it in full): a value
    /// that is not whole msgpack, or is too deep, fails the message as decoding it would.
    @Test(arguments: [
        // {"c": <value>} with a broken value, then what decoding says.
        ("81a163", "unexpected end of data"),
        ("81a163c1", "0xc1 is never used"),
        ("81a163d6ff00000000", "extension types"),
        ("81a16392a161", "unexpected end of data"),
        ("81a163a5616263", "runs past the end"),
        ("81a163ddffffffff", "4294967295 elements"),
        ("81a163dfffffffff", "8589934590 elements"),
        ("81a163cfffffffffffffffff", "does not fit in 64-bit signed"),
        ("81a163c0c0", "extra bytes"),
    ])
    func aBrokenValueSetAsideFailsTheMessage(input: String, reason: String) {
        #expect {
            try MessagePack.decodeMessage(bytes(hex: input), settingAside: "c")
        } throws: { error in
            guard let error = error as? ProtocolError else { return false }
            return error.code == .invalidMessagePack && error.message.contains(reason)
        }
    }

    @Test func aValueSetAsideIsBoundedInDepthAndTheMessageMustBeAMap() {
        let deep = [0x81, 0xa1, 0x63] + [UInt8](repeating: 0x91, count: 100_000) + [0xc0]
        #expect {
            try MessagePack.decodeMessage(deep, settingAside: "c")
        } throws: { error in
            (error as? ProtocolError)?.message.contains("nesting deeper than 64") == true
        }
        #expect {
            try MessagePack.decodeMessage([0x91, 0x01], settingAside: "c")
        } throws: { error in
            (error as? ProtocolError)?.code == .invalidMessage
        }
    }

    @Test func randomBytesNeverCrash() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<20_000 {
            let count = Int.random(in: 0..<48, using: &generator)
            let input = (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
            _ = try? MessagePack.decode(input)
            _ = try? MessagePack.decodeMessage([0x81, 0xa1, 0x63] + input, settingAside: "c")
        }
    }
}
