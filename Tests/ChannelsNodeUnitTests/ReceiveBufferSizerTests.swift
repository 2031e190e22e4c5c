@testable import ChannelsNode
import NIOCore
import Testing

@Suite struct ReceiveBufferSizerTests {
    @Test func fullReadsDoubleItUpTo64KiB() {
        var sizer = ReceiveBufferSizer()
        #expect(sizer.size == 256)
        #expect(sizer.buffer(allocator: ByteBufferAllocator()).capacity >= 256)
        var sizes: [Int] = []
        for _ in 0..<10 {
            _ = sizer.record(actualReadBytes: sizer.size)
            sizes.append(sizer.size)
        }
        #expect(sizes == [512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 65536, 65536])
        let grew = sizer.record(actualReadBytes: 65536)
        #expect(!grew, "no growth past the maximum")
    }

    @Test func twoSmallReadsInARowHalveItDownTo64Bytes() {
        var sizer = ReceiveBufferSizer()
        _ = sizer.record(actualReadBytes: 10)
        #expect(sizer.size == 256, "one small read is not enough")
        _ = sizer.record(actualReadBytes: 200)
        #expect(sizer.size == 256, "a read of more than half resets the count")
        _ = sizer.record(actualReadBytes: 10)
        _ = sizer.record(actualReadBytes: 10)
        #expect(sizer.size == 128)
        for _ in 0..<10 { _ = sizer.record(actualReadBytes: 0) }
        #expect(sizer.size == 64)
    }

    @Test func itFitsInAnExistentialWithoutABox() {
        #expect(MemoryLayout<ReceiveBufferSizer>.size <= 3 * MemoryLayout<Int>.size)
    }
}
