import ChannelLayers
import ChannelsProtocol
import Crypto
import FoundationEssentials
import JWTKit

/// Authenticates WebSocket handshakes with a JSON Web Token (HS256 or RS256, verified by jwt-kit).
///
/// The token comes from the `Authorization: Bearer <token>` header or, for browsers (which cannot set
/// headers on a WebSocket), from the `token` query parameter. The signature, `exp` (required) and `nbf` are
/// checked, and `iss` and `aud` when configured. The verified claims become ``Scope/user``; a `groups`
/// claim (an array of group names) limits the groups the connection may join, which the chat consumer
/// honours. A missing or bad token refuses the handshake with HTTP 401 (close code 4401 once upgraded).
///
/// The key is chosen by the header's `alg` (and must match its `kid` when one is configured): `HS256`
/// verifies with the secret, `RS256` with the public key, any other `alg` is refused, so a token cannot
/// pick a key of another kind (algorithm confusion). Also refused: an `iat` in the future, an `exp` further
/// ahead than ``Configuration/maxLifetime``, a `crit` header (no extension is understood), a `groups`
/// claim that is present but not an array of strings (it would otherwise grant every room), a `sub` that is
/// neither a string nor an integer (an integer is its decimal string, ``Scope/userID``), and presence claims
/// other nodes could not list (``PresenceInfo/problem(user:info:)``: `info` over 4 KiB of JSON or 6 levels, `sub`
/// over 512 bytes).
public struct JWTAuthMiddleware: HandshakeMiddleware {
    /// Where the keys and the expected claims come from.
    public struct Configuration: Sendable {
        /// The shared secret of HS256 tokens.
        public var hs256Secret: String?
        /// The PEM public key (`-----BEGIN PUBLIC KEY-----`) of RS256 tokens.
        public var rs256PublicKeyPEM: String?
        /// The `iss` a token must carry, if set.
        public var issuer: String?
        /// A value the token's `aud` must include, if set.
        public var audience: String?
        /// The query parameter that may carry the token.
        public var queryParameter: String
        /// The `kid` HS256 tokens must carry, if set.
        public var hs256KeyID: String?
        /// The `kid` RS256 tokens must carry, if set.
        public var rs256KeyID: String?
        /// How far ahead `exp` may be; longer-lived tokens are refused. `nil`: no bound.
        public var maxLifetime: Duration?

        /// A short digest of these settings (keys, issuer, audience, key ids, lifetime): nodes of one
        /// cluster publish it in the registry and compare, without revealing the secret.
        public var fingerprint: String {
            let text = [
                hs256Secret ?? "", rs256PublicKeyPEM ?? "", issuer ?? "", audience ?? "", hs256KeyID ?? "", rs256KeyID ?? "",
                maxLifetime.map { "\($0)" } ?? "",
            ].joined(separator: "\u{0}")
            return "jwt-" + SHA256.hash(data: Array(text.utf8)).prefix(6).map { String($0, radix: 16).leftPadded() }.joined()
        }

        public init(
            hs256Secret: String? = nil,
            rs256PublicKeyPEM: String? = nil,
            issuer: String? = nil,
            audience: String? = nil,
            queryParameter: String = "token",
            maxLifetime: Duration? = nil
        ) {
            self.maxLifetime = maxLifetime
            self.hs256Secret = hs256Secret
            self.rs256PublicKeyPEM = rs256PublicKeyPEM
            self.issuer = issuer
            self.audience = audience
            self.queryParameter = queryParameter
        }
    }

    /// A key the middleware could not use.
    public struct KeyError: Error, CustomStringConvertible {
        public let description: String
    }

    /// The claims jwt-kit checks; everything else is read from the payload as it is.
    struct CheckedClaims: JWTPayload {
        var exp: ExpirationClaim
        var nbf: NotBeforeClaim?
        var iat: IssuedAtClaim?
        var iss: IssuerClaim?
        var aud: AudienceClaim?

        func verify(using algorithm: some JWTAlgorithm) async throws {
            try exp.verifyNotExpired()
            try nbf?.verifyNotBefore()
        }
    }

    /// Clocks of issuers and nodes differ a little.
    static let leeway: Double = 30

    public let configuration: Configuration
    /// One collection per algorithm, each with one key, chosen by the header's `alg`.
    private let hs256Keys: JWTKeyCollection?
    private let rs256Keys: JWTKeyCollection?

    /// Loads the keys. Throws ``KeyError`` when neither key is given or the PEM cannot be read.
    public init(configuration: Configuration) async throws(KeyError) {
        guard configuration.hs256Secret != nil || configuration.rs256PublicKeyPEM != nil else {
            throw KeyError(description: "JWT authentication needs an HS256 secret or an RS256 public key")
        }
        var hs256Keys: JWTKeyCollection?
        if let secret = configuration.hs256Secret {
            guard secret.utf8.count >= 32 else {
                throw KeyError(description: "the HS256 secret is \(secret.utf8.count) bytes; use at least 32 random bytes")
            }
            hs256Keys = await JWTKeyCollection().add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256)
        }
        var rs256Keys: JWTKeyCollection?
        if let pem = configuration.rs256PublicKeyPEM {
            do {
                rs256Keys = await JWTKeyCollection().add(rsa: try Insecure.RSA.PublicKey(pem: pem), digestAlgorithm: .sha256)
            } catch {
                throw KeyError(description: "the RS256 public key is not a PEM RSA public key (2048 bits or more): \(error)")
            }
        }
        self.configuration = configuration
        self.hs256Keys = hs256Keys
        self.rs256Keys = rs256Keys
    }

    public func handshake(_ request: inout HandshakeRequest) async throws(HandshakeRejection) {
        guard let token = token(in: request.scope) else {
            throw HandshakeRejection(
                status: 401, reason: "no token: send Authorization: Bearer <jwt> or ?\(configuration.queryParameter)=<jwt>"
            )
        }
        let keys = try keys(for: token)
        let checked: CheckedClaims
        do {
            checked = try await keys.verify(token, as: CheckedClaims.self)
        } catch {
            throw HandshakeRejection(status: 401, reason: "invalid token: \(Self.reason(error))")
        }
        let now = Date()
        if let iat = checked.iat?.value, iat.timeIntervalSince(now) > Self.leeway {
            throw HandshakeRejection(status: 401, reason: "invalid token: issued in the future (iat)")
        }
        if let maxLifetime = configuration.maxLifetime, checked.exp.value.timeIntervalSince(now) > maxLifetime / .seconds(1) + Self.leeway {
            throw HandshakeRejection(status: 401, reason: "invalid token: exp is more than \(maxLifetime) ahead")
        }
        if let issuer = configuration.issuer, checked.iss?.value != issuer {
            throw HandshakeRejection(status: 401, reason: "invalid token: issuer is not \(issuer)")
        }
        if let audience = configuration.audience, checked.aud?.value.contains(audience) != true {
            throw HandshakeRejection(status: 401, reason: "invalid token: audience does not include \(audience)")
        }
        guard let claims = Self.claims(of: token) else {
            throw HandshakeRejection(status: 401, reason: "invalid token: the payload is not a JSON object")
        }
        if let groups = claims["groups"], groups.array?.allSatisfy({ $0.string != nil }) != true {
            throw HandshakeRejection(status: 401, reason: "invalid token: the groups claim must be an array of group names")
        }
        // A sub that is neither a string nor an integer names nobody: presence and user disconnects could not find it.
        switch claims["sub"] {
        case nil, .string?, .int?: break
        default: throw HandshakeRejection(status: 401, reason: "invalid token: the sub claim must be a string or an integer")
        }
        request.scope.user = claims
        // Refused rather than cut: a member other nodes cannot read would be invisible in their presence.
        if let problem = PresenceInfo.problem(user: request.scope.userID, info: claims["info"]) {
            throw HandshakeRejection(status: 401, reason: "invalid token: \(problem)")
        }
    }

    /// The keys for the token's header: its `alg` picks them, its `kid` must match when one is configured.
    private func keys(for token: String) throws(HandshakeRejection) -> JWTKeyCollection {
        guard let header = Self.segment(0, of: token) else {
            throw HandshakeRejection(status: 401, reason: "invalid token: the header is not a JSON object")
        }
        if header["crit"] != nil {
            throw HandshakeRejection(status: 401, reason: "invalid token: crit header extensions are not supported")
        }
        let alg = header["alg"]?.string ?? ""
        let (keys, keyID): (JWTKeyCollection?, String?)
        switch alg {
        case "HS256": (keys, keyID) = (hs256Keys, configuration.hs256KeyID)
        case "RS256": (keys, keyID) = (rs256Keys, configuration.rs256KeyID)
        default: throw HandshakeRejection(status: 401, reason: "invalid token: alg \(alg.prefix(16)) is not accepted (HS256 or RS256)")
        }
        guard let keys else {
            throw HandshakeRejection(status: 401, reason: "invalid token: this node has no \(alg) key")
        }
        if let keyID, header["kid"]?.string != keyID {
            throw HandshakeRejection(status: 401, reason: "invalid token: kid is not \(keyID)")
        }
        return keys
    }

    private func token(in scope: Scope) -> String? {
        if let header = scope.header("authorization") {
            let parts = header.split(separator: " ", maxSplits: 1)
            if parts.count == 2, parts[0].lowercased() == "bearer" { return String(parts[1]) }
        }
        if let token = scope.query[configuration.queryParameter], !token.isEmpty { return token }
        return nil
    }

    private static func reason(_ error: any Error) -> String {
        if let error = error as? JWTError { return String(error.reason?.prefix(80) ?? "\(error.errorType)") }
        return "\(error)".prefix(80).description
    }

    /// The payload's claims, read with the protocol's bounded JSON parser once the signature was verified.
    static func claims(of token: String) -> [String: MessageValue]? {
        segment(1, of: token)
    }

    /// The header (0) or payload (1) of a token as a JSON object.
    static func segment(_ index: Int, of token: String) -> [String: MessageValue]? {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let bytes = Base64URL.decode(parts[index]),
            case .map(let object)? = try? JSON.parse(bytes: bytes, limits: .init(maxSize: 16 * 1024, maxDepth: 16))
        else { return nil }
        return Dictionary(uniqueKeysWithValues: object.map { ($0.key, $0.value) })
    }
}

extension String {
    fileprivate func leftPadded() -> String { count == 1 ? "0" + self : self }
}

/// Base64url without padding (RFC 4648 §5), as JWTs use it.
enum Base64URL {
    static func decode(_ text: Substring) -> [UInt8]? {
        var output: [UInt8] = []
        output.reserveCapacity(text.utf8.count * 3 / 4)
        var accumulator: UInt32 = 0
        var bits = 0
        for byte in text.utf8 {
            let value: UInt32
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): value = UInt32(byte - UInt8(ascii: "A"))
            case UInt8(ascii: "a")...UInt8(ascii: "z"): value = UInt32(byte - UInt8(ascii: "a")) + 26
            case UInt8(ascii: "0")...UInt8(ascii: "9"): value = UInt32(byte - UInt8(ascii: "0")) + 52
            case UInt8(ascii: "-"): value = 62
            case UInt8(ascii: "_"): value = 63
            default: return nil
            }
            accumulator = accumulator << 6 | value
            bits += 6
            if bits >= 8 {
                bits -= 8
                output.append(UInt8(truncatingIfNeeded: accumulator >> UInt32(bits)))
            }
        }
        return bits >= 6 ? nil : output
    }
}
