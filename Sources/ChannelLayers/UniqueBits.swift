import Synchronization

/// 64 bits that differ at every call in this process, and between processes by a random seed, drawn
/// without a system call (the system generator makes one per draw). Not for secrets.
///
/// SplitMix64's output function over a seeded counter: the function is a bijection, so no two calls in a
/// process repeat.
package enum UniqueBits {
    package static func next() -> UInt64 {
        var z = seed &+ counter.add(1, ordering: .relaxed).newValue &* 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// 32 bits, different at each call for 2^32 calls of this or ``next()``: a 32-bit mix that is a
    /// bijection, over the same seeded counter.
    package static func next32() -> UInt32 {
        var x = UInt32(truncatingIfNeeded: seed) &+ UInt32(truncatingIfNeeded: counter.add(1, ordering: .relaxed).newValue)
        x ^= x >> 16
        x &*= 0x7feb_352d
        x ^= x >> 15
        x &*= 0x846c_a68b
        x ^= x >> 16
        return x
    }

    /// Appends `count` bytes of ``next()``.
    package static func append(_ count: Int, to bytes: inout [UInt8]) {
        var left = count
        while left > 0 {
            var bits = next()
            for _ in 0..<min(8, left) {
                bytes.append(UInt8(truncatingIfNeeded: bits))
                bits >>= 8
            }
            left -= 8
        }
    }

    private static let seed = UInt64.random(in: .min ... .max)
    private static let counter = Atomic<UInt64>(0)
}
