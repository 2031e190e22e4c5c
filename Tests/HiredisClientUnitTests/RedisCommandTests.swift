import NIOCore
import Testing

@testable import HiredisClient

/// The RESP2 bytes a command is sent as.
struct RedisCommandTests {
    @Test func everyKindOfArgumentIsABulkStringWithItsLength() {
        let long = String(repeating: "é", count: 600)
        var buffer = ByteBufferAllocator().buffer(capacity: 4)
        buffer.writeString("from a buffer")
        let arguments: [RedisArgument] = [
            "asgi__group__chat", .bytes([0, 13, 10, 255]), .integer(-42), .integer(1_234_567_890_123), "", .buffer(buffer), .string(long),
            .bytes([]),
        ]
        let command = RedisCommand("PUBLISH", arguments: arguments)
        let expected =
            "*9\r\n$7\r\nPUBLISH\r\n$17\r\nasgi__group__chat\r\n$4\r\n\u{0}\r\n\u{FF}\r\n$3\r\n-42\r\n$13\r\n1234567890123\r\n$0\r\n\r\n"
            + "$13\r\nfrom a buffer\r\n$1200\r\n\(long)\r\n$0\r\n\r\n"
        var expectedBytes = Array(expected.utf8)
        // The raw 0xFF byte, which a Swift string cannot hold as one byte.
        let marker = Array("\u{FF}".utf8)
        if let index = expectedBytes.firstRange(of: marker) { expectedBytes.replaceSubrange(index, with: [255]) }
        #expect(Array(command.encoded.readableBytesView) == expectedBytes)
        #expect(command.name == "PUBLISH")
    }

    @Test func aCommandWithoutArgumentsAndOneWithManyAreWhole() {
        #expect(String(buffer: RedisCommand("PING").encoded) == "*1\r\n$4\r\nPING\r\n")
        let many = RedisCommand("DEL", arguments: (0..<12).map { .string("k\($0)") })
        var text = "*13\r\n$3\r\nDEL\r\n"
        for index in 0..<12 { text += "$\(index < 10 ? 2 : 3)\r\nk\(index)\r\n" }
        #expect(String(buffer: many.encoded) == text)
    }
}
