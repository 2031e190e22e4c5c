import ChannelsProtocol
import Testing

@Suite struct WebSocketFrameHeaderTests {
    /// A frame's bytes: FIN and the opcode, the length in its shortest form (or `lengthForm`), the key.
    static func frame(
        opcode: UInt8 = 0x1, fin: Bool = true, rsv1: Bool = false, key: [UInt8]? = [1, 2, 3, 4], payload: Int, lengthForm: Int? = nil
    ) -> [UInt8] {
        var bytes: [UInt8] = [(fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | opcode]
        let mask: UInt8 = key == nil ? 0 : 0x80
        switch lengthForm ?? (payload < 126 ? 7 : payload < 65536 ? 16 : 64) {
        case 7: bytes.append(mask | UInt8(payload))
        case 16: bytes += [mask | 126, UInt8(payload >> 8), UInt8(payload & 0xFF)]
        default: bytes += [mask | 127] + (0..<8).reversed().map { UInt8((UInt64(payload) >> (8 * UInt64($0))) & 0xFF) }
        }
        return bytes + (key ?? []) + [UInt8](repeating: 0x61, count: payload)
    }

    static func parse(_ bytes: [UInt8], max: Int = 1 << 20) throws(WebSocketFrameHeader.Failure) -> WebSocketFrameHeader? {
        try bytes.withUnsafeBytes { raw in
            Result { () throws(WebSocketFrameHeader.Failure) in try WebSocketFrameHeader.parse(raw, maxPayload: max) }
        }.get()
    }

    @Test(arguments: [(0, 7, 6), (125, 7, 6), (126, 16, 8), (65535, 16, 8), (65536, 64, 14), (5, 64, 14)])
    func eachLengthFormGivesTheLengthAndWhereThePayloadStarts(payload: Int, form: Int, headerLength: Int) throws {
        let header = try #require(try Self.parse(Self.frame(payload: payload, lengthForm: form)))
        #expect(header == WebSocketFrameHeader(fin: true, opcode: 1, maskKey: 0x0102_0304, payloadLength: payload, headerLength: headerLength))
    }

    @Test func bitsOpcodeAndAnUnmaskedFrame() throws {
        let header = try #require(try Self.parse(Self.frame(opcode: 0x0, fin: false, rsv1: true, key: nil, payload: 3)))
        #expect(header == WebSocketFrameHeader(fin: false, rsv1: true, opcode: 0, maskKey: nil, payloadLength: 3, headerLength: 2))
        #expect(try Self.parse([0xF9, 0x80, 0, 0, 0, 0]) == WebSocketFrameHeader(
            fin: true, rsv1: true, rsv2: true, rsv3: true, opcode: 0x9, maskKey: 0, payloadLength: 0, headerLength: 6
        ))
        #expect(try Self.parse([0x89, 0x00])?.isControl == true)
        #expect(try Self.parse([0x82, 0x00])?.isControl == false)
    }

    /// Until the header's last byte is there, there is no header yet (and no error).
    @Test(arguments: [7, 16, 64])
    func aHeaderCutAnywhereIsNotThereYet(form: Int) throws {
        let bytes = Self.frame(payload: 10, lengthForm: form)
        let headerLength = try #require(try Self.parse(bytes)).headerLength
        for cut in 0..<headerLength { #expect(try Self.parse(Array(bytes.prefix(cut))) == nil, "cut at \(cut)") }
        #expect(try Self.parse(Array(bytes.prefix(headerLength)))?.payloadLength == 10)
    }

    @Test func aLengthOverTheLimitIsRefusedBeforeItsPayloadArrives() {
        // Only the length's bytes: neither the key nor the payload have come.
        #expect(throws: WebSocketFrameHeader.Failure.tooLarge(length: 1001, limit: 1000)) {
            try Self.parse([0x81, 0xFE, 0x03, 0xE9], max: 1000)
        }
        #expect(throws: WebSocketFrameHeader.Failure.tooLarge(length: 1 << 40, limit: 1000)) {
            try Self.parse([0x82, 0xFF, 0, 0, 0x01, 0, 0, 0, 0, 0], max: 1000)
        }
        #expect(throws: Never.self) { try Self.parse(Self.frame(payload: 1000), max: 1000) }
    }

    @Test func brokenRulesAreNamed() {
        #expect(throws: WebSocketFrameHeader.Failure.lengthOutOfRange) {
            try Self.parse([0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1])
        }
        #expect(throws: WebSocketFrameHeader.Failure.controlFrameTooLong(length: 126)) {
            try Self.parse(Self.frame(opcode: 0x9, payload: 126))
        }
        #expect(throws: WebSocketFrameHeader.Failure.fragmentedControlFrame) {
            try Self.parse(Self.frame(opcode: 0x8, fin: false, payload: 2))
        }
        #expect(WebSocketFrameHeader.Failure.tooLarge(length: 9, limit: 8).description == "a frame of 9 bytes is over the limit of 8")
    }
}
