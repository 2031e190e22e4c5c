/// Redis Cluster's key-to-slot mapping: CRC16 (XMODEM) of the key, or of its hash tag, mod 16384.
///
/// A hash tag is the part between the first `{` and the next `}` when it is not empty
/// (`asgi:history:{chat_lobby}:meta` and `asgi__group__{chat_lobby}` share a slot); shard channels of
/// `SSUBSCRIBE`/`SPUBLISH` are mapped the same way.
public enum RedisClusterSlot {
    public static let count = 16384

    /// The slot of `key`.
    public static func of(_ key: String) -> Int {
        of(Array(key.utf8))
    }

    /// The slot of a key given as bytes.
    public static func of(_ key: [UInt8]) -> Int {
        var hashed = key[...]
        if let open = key.firstIndex(of: UInt8(ascii: "{")),
            let close = key[(open + 1)...].firstIndex(of: UInt8(ascii: "}")), close > open + 1
        {
            hashed = key[(open + 1)..<close]
        }
        return Int(crc16(hashed)) % count
    }

    /// CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0, as Redis Cluster's specification gives it.
    public static func crc16(_ bytes: some Sequence<UInt8>) -> UInt16 {
        var crc: UInt16 = 0
        for byte in bytes {
            crc = (crc << 8) ^ table[Int(((crc >> 8) ^ UInt16(byte)) & 0xFF)]
        }
        return crc
    }

    private static let table: [UInt16] = (0..<256).map { index in
        var value = UInt16(index) << 8
        for _ in 0..<8 {
            value = value & 0x8000 != 0 ? (value << 1) ^ 0x1021 : value << 1
        }
        return value
    }
}
