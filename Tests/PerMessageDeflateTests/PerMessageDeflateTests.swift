import NIOCore
import PerMessageDeflate
import Testing

/// Negotiation and one message's compression (RFC 7692), no network.
@Suite struct PerMessageDeflateTests {
    @Test func theOffersBrowsersAndLibrariesMakeAreTaken() {
        #expect(PerMessageDeflate.accepts(offers: ["permessage-deflate; client_max_window_bits"]))  // Chromium
        #expect(PerMessageDeflate.accepts(offers: ["permessage-deflate"]))  // Firefox
        #expect(PerMessageDeflate.accepts(offers: ["permessage-deflate; client_max_window_bits=12; server_no_context_takeover"]))
        #expect(PerMessageDeflate.accepts(offers: [PerMessageDeflate.response]))  // our client
        // A second offer the node can take after one it cannot.
        #expect(PerMessageDeflate.accepts(offers: ["permessage-deflate; server_max_window_bits=10, permessage-deflate"]))
    }

    @Test func offersTheNodeCannotHonourAreRefused() {
        #expect(!PerMessageDeflate.accepts(offers: []))
        #expect(!PerMessageDeflate.accepts(offers: ["x-webkit-deflate-frame"]))
        #expect(!PerMessageDeflate.accepts(offers: ["permessage-deflate; server_max_window_bits=10"]))
        #expect(!PerMessageDeflate.accepts(offers: ["permessage-deflate; client_max_window_bits=99"]))
        #expect(!PerMessageDeflate.accepts(offers: ["permessage-deflate; unknown_parameter"]))
        #expect(!PerMessageDeflate.accepts(offers: ["permessage-deflate; server_no_context_takeover=1"]))
    }

    @Test func aMessageComesBackWholeAndSmaller() throws {
        let text = String(repeating: #"{"id": 42, "title": "a model update", "done": false}, "#, count: 40)
        let payload = ByteBuffer(string: text)
        let compressed = try #require(PerMessageDeflate.deflate(payload))
        #expect(compressed.readableBytes * 3 < payload.readableBytes, "\(compressed.readableBytes) of \(payload.readableBytes)")
        // Each message on its own: compressing it again gives the same bytes (no context carried over).
        #expect(PerMessageDeflate.deflate(payload) == compressed)
        let inflated = try PerMessageDeflate.inflate(compressed, limit: 1 << 20, allocator: ByteBufferAllocator())
        #expect(String(buffer: inflated) == text)
        let empty = try #require(PerMessageDeflate.deflate(ByteBuffer()))
        #expect(try PerMessageDeflate.inflate(empty, limit: 10, allocator: ByteBufferAllocator()).readableBytes == 0)
    }

    @Test func inflatingPastTheLimitOrNonsenseFails() throws {
        let bomb = try #require(PerMessageDeflate.deflate(ByteBuffer(repeating: 0x20, count: 4 << 20)))
        #expect(bomb.readableBytes < 8 * 1024)
        #expect(throws: PerMessageDeflate.TooLarge.self) { try PerMessageDeflate.inflate(bomb, limit: 64 * 1024, allocator: ByteBufferAllocator()) }
        #expect(throws: PerMessageDeflate.Corrupt.self) {
            try PerMessageDeflate.inflate(ByteBuffer(bytes: [0xff, 0xff, 0xff, 0x00, 0x13]), limit: 1024, allocator: ByteBufferAllocator())
        }
    }
}
