import NIOCore

/// Sizes each connection's receive buffer as NIO's `AdaptiveRecvByteBufferAllocator` does (a power of two,
/// doubled after a read that filled it, halved after two reads that used at most half of it), in two bytes.
///
/// A channel keeps its allocator in an existential, which holds three words inline: NIO's adaptive allocator
/// (four integers and a flag) took a heap box on every connection, and a lookup through it on every read.
struct ReceiveBufferSizer: RecvByteBufferAllocator {
    /// Powers of two: 64 bytes to 64 KiB, starting at 256 (a small handshake or frame fits; larger reads grow it).
    static let minimumLog2: UInt8 = 6
    static let maximumLog2: UInt8 = 16
    static let initialLog2: UInt8 = 8

    private var sizeLog2 = Self.initialLog2
    private var decreaseNow = false

    /// The size of the next buffer.
    var size: Int { 1 << Int(sizeLog2) }

    func buffer(allocator: ByteBufferAllocator) -> ByteBuffer {
        allocator.buffer(capacity: size)
    }

    mutating func record(actualReadBytes: Int) -> Bool {
        if actualReadBytes <= size >> 1, sizeLog2 > Self.minimumLog2 {
            if decreaseNow {
                sizeLog2 -= 1
                decreaseNow = false
            } else {
                decreaseNow = true
            }
            return false
        }
        decreaseNow = false
        guard actualReadBytes >= size, sizeLog2 < Self.maximumLog2 else { return false }
        sizeLog2 += 1
        return true
    }
}
