import Crypto
import CryptoExtras
import Foundation

/// Fernet tokens (the spec Python's `cryptography.fernet` implements), built from swift-crypto's AES-CBC
/// and HMAC-SHA256: `0x80 | timestamp (8, big-endian) | IV (16) | AES-128-CBC/PKCS#7 | HMAC (32)`, then
/// URL-safe base64 with padding.
package struct Fernet: Sendable {
    private let signingKey: SymmetricKey
    private let encryptionKey: SymmetricKey

    /// How far a token's timestamp may lie in the future (cryptography's `_MAX_CLOCK_SKEW`).
    static let maxClockSkew: Int64 = 60

    /// A Fernet from its 32 raw key bytes: the first 16 sign, the last 16 encrypt.
    package init(rawKey: [UInt8]) {
        precondition(rawKey.count == 32, "a Fernet key has 32 bytes")
        signingKey = SymmetricKey(data: rawKey[0..<16])
        encryptionKey = SymmetricKey(data: rawKey[16..<32])
    }

    /// channels_redis' key for an entry of `symmetric_encryption_keys`: the SHA-256 of its UTF-8 bytes.
    package init(channelsKey: String) {
        self.init(rawKey: Array(SHA256.hash(data: Array(channelsKey.utf8))))
    }

    /// The token for `plaintext`, as URL-safe base64 bytes.
    package func encrypt(_ plaintext: [UInt8], now: Int64 = Int64(Date().timeIntervalSince1970)) -> [UInt8] {
        let iv = AES._CBC.IV()
        var token: [UInt8] = [0x80]
        token.reserveCapacity(plaintext.count + 89)
        withUnsafeBytes(of: UInt64(bitPattern: now).bigEndian) { token.append(contentsOf: $0) }
        token.append(contentsOf: iv)
        // Encryption with a valid 16-byte key and IV cannot fail.
        token.append(contentsOf: try! AES._CBC.encrypt(plaintext, using: encryptionKey, iv: iv))
        token.append(contentsOf: HMAC<SHA256>.authenticationCode(for: token, using: signingKey))
        return Array(Data(token).base64EncodedString().utf8.map { $0 == UInt8(ascii: "+") ? UInt8(ascii: "-") : $0 == UInt8(ascii: "/") ? UInt8(ascii: "_") : $0 })
    }

    /// The plaintext of `token`; throws when it is malformed, was signed with another key, or is older than `ttl` seconds.
    package func decrypt(_ token: some Collection<UInt8>, ttl: Int64?, now: Int64 = Int64(Date().timeIntervalSince1970)) throws(FernetError) -> [UInt8] {
        guard let data = Self.decodeBase64URL(token), data.count >= 1 + 8 + 16 + 16 + 32, data[0] == 0x80 else {
            throw FernetError("not a Fernet token")
        }
        let timestamp = data[1..<9].reduce(Int64(0)) { $0 << 8 | Int64($1) }
        if let ttl, timestamp + ttl < now { throw FernetError("the token expired (older than \(ttl) s)") }
        if timestamp > now + Self.maxClockSkew { throw FernetError("the token's time lies in the future") }
        let signed = data[..<(data.count - 32)]
        guard HMAC<SHA256>.isValidAuthenticationCode(data[(data.count - 32)...], authenticating: signed, using: signingKey) else {
            throw FernetError("the signature does not match this key")
        }
        do {
            let iv = try AES._CBC.IV(ivBytes: data[9..<25])
            return Array(try AES._CBC.decrypt(data[25..<(data.count - 32)], using: encryptionKey, iv: iv))
        } catch {
            throw FernetError("the ciphertext does not decrypt")
        }
    }

    private static func decodeBase64URL(_ token: some Collection<UInt8>) -> [UInt8]? {
        var text = String(decoding: token, as: UTF8.self).replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while text.utf8.count % 4 != 0 { text += "=" }
        return Data(base64Encoded: text).map(Array.init)
    }
}

/// Several Fernets: the first encrypts, any of them decrypts (key rotation, as `MultiFernet`).
package struct MultiFernet: Sendable {
    package let fernets: [Fernet]

    package init(channelsKeys: [String]) {
        fernets = channelsKeys.map(Fernet.init(channelsKey:))
    }

    package func encrypt(_ plaintext: [UInt8]) -> [UInt8] {
        fernets[0].encrypt(plaintext)
    }

    package func decrypt(_ token: some Collection<UInt8>, ttl: Int64?) throws(FernetError) -> [UInt8] {
        var last = FernetError("no key")
        for fernet in fernets {
            do { return try fernet.decrypt(token, ttl: ttl) } catch { last = error }
        }
        throw last
    }
}

/// Why a Fernet token was refused.
package struct FernetError: Error, Sendable {
    package let reason: String
    init(_ reason: String) { self.reason = reason }
}
