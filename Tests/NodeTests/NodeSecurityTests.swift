import ChannelsTestSupport
import ChannelsWebSocketClient
import Foundation
import JWTKit
import Testing
import CryptoExtras

/// Authentication and per-node and per-connection limits against a real node: each refusal has its
/// documented HTTP status or close code, and the node keeps serving everyone else.
@Suite struct NodeSecurityTests {
    struct TestClaims: JWTPayload {
        var sub: SubjectClaim
        var exp: ExpirationClaim
        var nbf: NotBeforeClaim?
        var iss: IssuerClaim?
        var aud: AudienceClaim?
        var groups: [String]?

        func verify(using algorithm: some JWTAlgorithm) async throws {}
    }

    static let secret = "a-test-secret-of-at-least-32-bytes-0123456789"

    static func hs256(_ claims: TestClaims, secret: String = secret) async throws -> String {
        try await JWTKeyCollection().add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256).sign(claims)
    }

    static func claims(
        sub: String = "alice", expiresIn seconds: Double = 300, groups: [String]? = nil, iss: String? = nil, aud: [String]? = nil,
        notBefore: Date? = nil
    ) -> TestClaims {
        TestClaims(
            sub: .init(value: sub), exp: .init(value: Date(timeIntervalSinceNow: seconds)), nbf: notBefore.map { .init(value: $0) },
            iss: iss.map { .init(value: $0) }, aud: aud.map { .init(value: $0) }, groups: groups
        )
    }

    static func secretFile() throws -> String {
        let path = NSTemporaryDirectory() + "channels-jwt-\(UUID().uuidString)"
        try secret.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func hs256TokensFromTheQueryOrTheHeaderAreRequired() async throws {
        let node = try await NodeProcess.start(arguments: ["--jwt-hs256-secret-file", try Self.secretFile()])
        let token = try await Self.hs256(Self.claims())

        let byQuery = try await ChatClient.connect(port: node.port, room: "lobby", query: "token=\(token)")
        let byHeader = try await ChatClient.connect(port: node.port, room: "lobby", headers: [("Authorization", "Bearer \(token)")])
        byQuery.say("authenticated")
        #expect(await byHeader.waitForFrames(1))
        #expect(byHeader.messages == ["authenticated"])

        let anonymous = try await ChatClient.connect(port: node.port, room: "lobby")
        #expect(await anonymous.client.closed()?.code == 4401)
        let plain = try await node.get("/ws/chat/lobby/")
        #expect(plain.status == 401 && plain.body.contains("no token"))
        // Nobody refused saw the room's traffic.
        #expect(anonymous.frames.isEmpty)
    }

    /// The secret's file by its environment name (CHANNELS_JWT_HS256_SECRET_FILE, beside --jwt-hs256-secret-file)
    /// and the RS256 key by its consistent flag name: both turn authentication on.
    @Test func jwtSettingsHaveConsistentNames() async throws {
        let node = try await NodeProcess.start(environment: ["CHANNELS_JWT_HS256_SECRET_FILE": try Self.secretFile()])
        let anonymous = try await ChatClient.connect(port: node.port, room: "lobby")
        #expect(await anonymous.client.closed()?.code == 4401)
        let token = try await Self.hs256(Self.claims())
        let member = try await ChatClient.connect(port: node.port, room: "lobby", query: "token=\(token)")
        member.say("in")
        #expect(await member.waitForFrames(1))

        let privateKey = try Insecure.RSA.PrivateKey(backing: _RSA.Signing.PrivateKey(keySize: .bits2048))
        let pemPath = NSTemporaryDirectory() + "channels-rsa-\(UUID().uuidString).pem"
        try privateKey.publicKey.pemRepresentation.write(toFile: pemPath, atomically: true, encoding: .utf8)
        let rs256 = try await NodeProcess.start(arguments: ["--jwt-rs256-public-key-file", pemPath])
        #expect(await (try ChatClient.connect(port: rs256.port, room: "lobby")).client.closed()?.code == 4401)
    }

    /// `--log-connections`: one info line per connection opened and closed; none without it.
    @Test func connectionLogLinesAreOptIn() async throws {
        let quiet = try await NodeProcess.start()
        let loud = try await NodeProcess.start(arguments: ["--log-connections"])
        for node in [quiet, loud] {
            let client = try await ChatClient.connect(port: node.port, room: "logged")
            await client.client.close()
        }
        #expect(await eventually { loud.log.contains("connection opened") && loud.log.contains("connection closed") })
        #expect(loud.log.contains("path=/ws/chat/logged/"))
        #expect(!quiet.log.contains("connection opened"))
    }

    @Test(arguments: ["expired", "wrong secret", "garbage", "not yet valid", "tampered"])
    func badTokensAreRefusedWith4401(kind: String) async throws {
        let node = try await NodeProcess.start(arguments: ["--jwt-hs256-secret-file", try Self.secretFile()])
        let token: String
        switch kind {
        case "expired": token = try await Self.hs256(Self.claims(expiresIn: -120))
        case "wrong secret": token = try await Self.hs256(Self.claims(), secret: "another-secret-that-is-long-enough-000000")
        case "not yet valid": token = try await Self.hs256(Self.claims(notBefore: Date(timeIntervalSinceNow: 600)))
        case "tampered":
            // Same signature, payload swapped for one granting more: the signature no longer matches.
            let real = try await Self.hs256(Self.claims(groups: ["chat_a"])).split(separator: ".")
            let other = try await Self.hs256(Self.claims(sub: "mallory")).split(separator: ".")
            token = [real[0], other[1], real[2]].joined(separator: ".")
        default: token = "not.a.jwt"
        }
        let client = try await ChatClient.connect(port: node.port, room: "lobby", query: "token=\(token)")
        let closed = await client.client.closed()
        #expect(closed?.code == 4401)
        #expect(closed?.reason.hasPrefix("invalid token") == true)
        // The node still serves a good token.
        let good = try await ChatClient.connect(port: node.port, room: "lobby", query: "token=\(try await Self.hs256(Self.claims()))")
        good.say("ok")
        #expect(await good.waitForFrames(1))
    }

    @Test func theGroupsClaimLimitsTheRoomsAConnectionMayJoin() async throws {
        let node = try await NodeProcess.start(arguments: ["--jwt-hs256-secret-file", try Self.secretFile()])
        let token = try await Self.hs256(Self.claims(groups: ["chat_support"]))
        let allowed = try await ChatClient.connect(port: node.port, room: "support", query: "token=\(token)")
        let refused = try await ChatClient.connect(port: node.port, room: "lobby", query: "token=\(token)")
        #expect(await refused.client.closed()?.code == 1008)
        allowed.say("in support")
        #expect(await allowed.waitForFrames(1))
    }

    @Test func rs256TokensWithIssuerAndAudience() async throws {
        let privateKey = try Insecure.RSA.PrivateKey(backing: _RSA.Signing.PrivateKey(keySize: .bits2048))
        let pemPath = NSTemporaryDirectory() + "channels-rsa-\(UUID().uuidString).pem"
        try privateKey.publicKey.pemRepresentation.write(toFile: pemPath, atomically: true, encoding: .utf8)
        let node = try await NodeProcess.start(arguments: [
            "--jwt-rs256-public-key", pemPath, "--jwt-issuer", "https://auth.example.com", "--jwt-audience", "chat",
        ])
        let signer = await JWTKeyCollection().add(rsa: privateKey, digestAlgorithm: .sha256)
        let good = try await signer.sign(Self.claims(iss: "https://auth.example.com", aud: ["chat", "other"]))
        let wrongIssuer = try await signer.sign(Self.claims(iss: "https://evil.example.com", aud: ["chat"]))
        let wrongAudience = try await signer.sign(Self.claims(iss: "https://auth.example.com", aud: ["billing"]))
        // The classic algorithm confusion: an HS256 token keyed with the public key's PEM text.
        let hs256Forgery = try await Self.hs256(
            Self.claims(iss: "https://auth.example.com", aud: ["chat"]), secret: privateKey.publicKey.pemRepresentation
        )

        let client = try await ChatClient.connect(port: node.port, room: "lobby", query: "token=\(good)")
        client.say("signed by rsa")
        #expect(await client.waitForFrames(1))
        for (token, reason) in [(wrongIssuer, "issuer"), (wrongAudience, "audience"), (hs256Forgery, "invalid token")] {
            let refused = try await ChatClient.connect(port: node.port, room: "lobby", query: "token=\(token)")
            let closed = await refused.client.closed()
            #expect(closed?.code == 4401, "\(reason)")
            #expect(closed?.reason.contains(reason) == true, "\(closed?.reason ?? "no close")")
        }
    }

    @Test func aShortOrUnreadableKeyStopsTheNodeWithOneLine() async throws {
        let shortSecret = try await NodeProcess.start(environment: ["CHANNELS_JWT_HS256_SECRET": "short"], waitForReady: false)
        #expect(await shortSecret.exitStatus() != 0)
        #expect(shortSecret.log.contains("use at least 32 random bytes"))
        let badPEM = NSTemporaryDirectory() + "channels-bad-\(UUID().uuidString).pem"
        try "not a key".write(toFile: badPEM, atomically: true, encoding: .utf8)
        let node = try await NodeProcess.start(arguments: ["--jwt-rs256-public-key", badPEM], waitForReady: false)
        #expect(await node.exitStatus() != 0)
        #expect(node.log.contains("not a PEM RSA public key"))
    }

    @Test(arguments: [
        (["CHANNELS_MAX_CONNECTIONS": "-1"], [String](), "--max-connections must be 0 or more"),
        (["CHANNELS_MESSAGE_BURST": "0"], [], "--message-burst positive"),
        (["CHANNELS_MAX_MESSAGES_PER_SECOND": "fast"], [], "is not a valid number"),
        ([:], ["--flush-delay=-1"], "--flush-delay must be 0 to 10000 microseconds"),
        (["CHANNELS_FLUSH_DELAY": "20000"], [], "--flush-delay must be 0 to 10000 microseconds"),
        ([:], ["--jwt-hs256-secret-file", "/nonexistent/secret"], "cannot read the HS256 secret file"),
    ])
    func invalidLimitsAndKeyFilesStopTheNodeWithAReason(environment: [String: String], arguments: [String], reason: String) async throws {
        let node = try await NodeProcess.start(arguments: arguments, environment: environment, waitForReady: false)
        #expect(await node.exitStatus() != 0)
        #expect(node.log.contains(reason), "\(node.log)")
    }

    @Test func theConnectionLimitRefusesWith1013AndFreesPlacesOnClose() async throws {
        let node = try await NodeProcess.start(arguments: ["--max-connections", "3"])
        var clients: [ChatClient] = []
        for _ in 0..<3 { clients.append(try await ChatClient.connect(port: node.port, room: "lobby")) }
        let fourth = try await ChatClient.connect(port: node.port, room: "lobby")
        let closed = await fourth.client.closed()
        #expect(closed?.code == 1013)
        #expect(closed?.reason.contains("connection limit") == true)
        // The three inside are unaffected.
        clients[0].say("still here")
        #expect(await clients[2].waitForFrames(1))
        // A place frees up when a client leaves.
        await clients[1].client.close()
        let admitted = await eventually(timeout: .seconds(10)) {
            guard let next = try? await ChatClient.connect(port: node.port, room: "lobby") else { return false }
            next.say("got in")
            return await next.waitForFrames(1, timeout: .seconds(2))
        }
        #expect(admitted)
        let metrics = try await node.get("/metrics").body
        #expect(metrics.contains("channels_connection_limit_refusals_total"))
    }

    @Test func aClientOverTheMessageRateIsClosedWith4029() async throws {
        let node = try await NodeProcess.start(arguments: ["--max-messages-per-second", "20", "--message-burst", "10"])
        let flooder = try await ChatClient.connect(port: node.port, room: "lobby")
        let polite = try await ChatClient.connect(port: node.port, room: "lobby")
        for index in 0..<200 { flooder.say("flood \(index)") }
        let closed = await flooder.client.closed()
        #expect(closed?.code == 4029)
        // At most the burst (plus what the rate refilled meanwhile) got through before the close.
        #expect(await polite.waitForFrames(10))
        #expect(polite.messages.count < 200)
        // A client within the rate is never closed.
        for index in 0..<5 {
            polite.say("polite \(index)")
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(await eventually(timeout: .seconds(10)) { polite.messages.filter { $0.hasPrefix("polite") }.count == 5 })
        #expect(polite.client.isOpen)
    }
}
