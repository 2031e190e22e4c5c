import Crypto

/// The API keys, checked in constant time.
///
/// Keys are kept as SHA-256 digests and a presented key is hashed before it is compared with every
/// digest, all bytes of all of them: the time taken says nothing about how much of a guess was right,
/// nor which key it came close to. (Hashing first also makes keys of different lengths compare alike.)
struct APIKeyring: Sendable {
    private let digests: [[UInt8]]

    init(keys: [String]) {
        digests = keys.map { Array(SHA256.hash(data: Array($0.utf8))) }
    }

    /// The index of the key an `Authorization` header carries (`Bearer <key>`), or `nil`.
    func key(fromAuthorization header: String?) -> Int? {
        guard let header else { return nil }
        let parts = header.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return nil }
        return match(parts[1].trimmingWhitespace())
    }

    /// The index of `presented` among the keys, or `nil`; the same work whichever key matches, or none.
    func match(_ presented: String) -> Int? {
        let digest = Array(SHA256.hash(data: Array(presented.utf8)))
        var found = -1
        for (index, candidate) in digests.enumerated() {
            var difference: UInt8 = 0
            for position in 0..<candidate.count { difference |= candidate[position] ^ digest[position] }
            // Branch-free select: found = index when difference == 0.
            let equal = Int(1 - ((Int(difference) | -Int(difference)) >> (Int.bitWidth - 1) & 1))
            found = equal * index + (1 - equal) * found
        }
        return found >= 0 ? found : nil
    }
}
