import ChannelLayers
/// channels_redis' mapping from a Redis channel name to one of several hosts.
///
/// `Int(Double(crc32(utf8(name)) & 0xFFF) / (4096.0 / Double(hostCount)))` with zlib's CRC-32, applied to
/// the full Redis channel name (`asgi__group__chat`), so a Swift node and a Django process pick the same host.
public enum ShardRing {
    /// The index of the host that owns `name` among `hostCount` hosts.
    public static func index(of name: String, hostCount: Int) -> Int {
        guard hostCount > 1 else { return 0 }
        let value = crc32(name.utf8) & 0xFFF
        return Int(Double(value) / (4096.0 / Double(hostCount)))
    }

    /// zlib's CRC-32 (the one Python's `binascii.crc32` computes).
    public static func crc32(_ bytes: some Sequence<UInt8>) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8)
        }
        return crc ^ 0xFFFF_FFFF
    }

    private static let table: [UInt32] = (0..<256).map { index in
        var value = UInt32(index)
        for _ in 0..<8 {
            value = value & 1 == 1 ? 0xEDB8_8320 ^ (value >> 1) : value >> 1
        }
        return value
    }
}
