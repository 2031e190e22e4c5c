import ChannelsTestSupport
import ChannelsWebSocketClient
import Crypto
import CryptoExtras
import Foundation
import JWTKit
import Testing

/// The JWT header picks the key, and claims that would widen access are refused (hardening round two).
@Suite struct JWTHeaderTests {
    static func base64URL(_ bytes: some Sequence<UInt8>) -> String {
        Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    /// A token built by hand, so that header and signature can disagree.
    static func token(header: String, payload: String, sign: (Data) throws -> Data) rethrows -> String {
        let signingInput = base64URL(Array(header.utf8)) + "." + base64URL(Array(payload.utf8))
        return signingInput + "." + base64URL(try sign(Data(signingInput.utf8)))
    }

    static func hmac(_ data: Data) -> Data {
        Data(HMAC<SHA256>.authenticationCode(for: data, using: SymmetricKey(data: Data(NodeSecurityTests.secret.utf8))))
    }

    static func payload(_ extra: String = "", expiresIn: Int = 300) -> String {
        #"{"sub":"alice","exp":\#(Int(Date().timeIntervalSince1970) + expiresIn)\#(extra)}"#
    }

    static func refused(_ token: String, port: Int) async throws -> (code: UInt16?, reason: String) {
        let client = try await ChatClient.connect(port: port, room: "lobby", query: "token=\(token)")
        let closed = await client.client.closed()
        return (closed?.code, closed?.reason ?? "")
    }

    @Test func theHeadersAlgPicksTheKeyAndNothingElseIsAccepted() async throws {
        let rsa = try _RSA.Signing.PrivateKey(keySize: .bits2048)
        let pemPath = NSTemporaryDirectory() + "channels-rsa-\(UUID().uuidString).pem"
        try rsa.publicKey.pemRepresentation.write(toFile: pemPath, atomically: true, encoding: .utf8)
        let node = try await NodeProcess.start(arguments: [
            "--jwt-hs256-secret-file", try NodeSecurityTests.secretFile(), "--jwt-rs256-public-key", pemPath,
        ])
        let rsaSign = { (data: Data) throws -> Data in try rsa.signature(for: data, padding: .insecurePKCS1v1_5).rawRepresentation }

        // With both keys configured, each kind of valid token gets in.
        let hs256 = Self.token(header: #"{"alg":"HS256","typ":"JWT"}"#, payload: Self.payload(), sign: Self.hmac)
        let rs256 = try Self.token(header: #"{"alg":"RS256","typ":"JWT"}"#, payload: Self.payload(), sign: rsaSign)
        for token in [hs256, rs256] {
            let client = try await ChatClient.connect(port: node.port, room: "lobby", query: "token=\(token)")
            client.say("in")
            #expect(await client.waitForFrames(1), "a valid token was refused")
        }
        // A header that names another algorithm than the signature's, or one the node does not take.
        let forgeries = [
            try Self.token(header: #"{"alg":"HS256"}"#, payload: Self.payload(), sign: rsaSign),
            try Self.token(header: #"{"alg":"PS256"}"#, payload: Self.payload(), sign: rsaSign),
            Self.token(header: #"{"alg":"RS256"}"#, payload: Self.payload(), sign: Self.hmac),
            Self.token(header: #"{"alg":"none"}"#, payload: Self.payload(), sign: { _ in Data() }),
            Self.token(header: #"{"alg":"HS256","crit":["exp"]}"#, payload: Self.payload(), sign: Self.hmac),
        ]
        for token in forgeries {
            let (code, reason) = try await Self.refused(token, port: node.port)
            #expect(code == 4401, "\(reason)")
            #expect(reason.hasPrefix("invalid token"), "\(reason)")
        }
    }

    @Test(arguments: [
        (#","groups":"chat_lobby""#, "groups claim"), (#","groups":null"#, "groups claim"), (#","groups":{"a":1}"#, "groups claim"),
        (#","groups":["chat_lobby",1]"#, "groups claim"),
    ])
    func aGroupsClaimThatIsNotAListOfNamesIsRefused(extra: String, reason: String) async throws {
        let node = try await NodeProcess.start(arguments: ["--jwt-hs256-secret-file", try NodeSecurityTests.secretFile()])
        let token = Self.token(header: #"{"alg":"HS256"}"#, payload: Self.payload(extra), sign: Self.hmac)
        let refused = try await Self.refused(token, port: node.port)
        #expect(refused.code == 4401)
        #expect(refused.reason.contains(reason), "\(refused.reason)")
    }

    @Test func tokensIssuedInTheFutureOrLivingTooLongAreRefused() async throws {
        let node = try await NodeProcess.start(arguments: [
            "--jwt-hs256-secret-file", try NodeSecurityTests.secretFile(), "--jwt-max-lifetime", "3600",
        ])
        let future = Self.token(header: #"{"alg":"HS256"}"#, payload: Self.payload(#","iat":\#(Int(Date().timeIntervalSince1970) + 3600)"#), sign: Self.hmac)
        let tooLong = Self.token(header: #"{"alg":"HS256"}"#, payload: Self.payload(expiresIn: 86_400), sign: Self.hmac)
        let fine = Self.token(header: #"{"alg":"HS256"}"#, payload: Self.payload(#","iat":\#(Int(Date().timeIntervalSince1970))"#), sign: Self.hmac)
        #expect(try await Self.refused(future, port: node.port).reason.contains("issued in the future"))
        #expect(try await Self.refused(tooLong, port: node.port).reason.contains("ahead"))
        let client = try await ChatClient.connect(port: node.port, room: "lobby", query: "token=\(fine)")
        client.say("in")
        #expect(await client.waitForFrames(1))
    }

    @Test func aNodeWarnsWhenItsPeersAuthenticateDifferently() async throws {
        let redis = try await RedisServer.start()
        let protected = try await NodeProcess.start(redis: [redis.url], arguments: ["--jwt-hs256-secret-file", try NodeSecurityTests.secretFile()])
        let open = try await NodeProcess.start(redis: [redis.url])
        #expect(await eventually(timeout: .seconds(10)) { open.log.contains("authenticate differently") }, "\(open.log)")
        #expect(open.log.contains(protected.nodeID))
        // Peers that agree say nothing.
        let alsoProtected = try await NodeProcess.start(redis: [redis.url], arguments: ["--jwt-hs256-secret-file", try NodeSecurityTests.secretFile()])
        // Its one check of the peers names the open node (still there) and not the one that agrees with it.
        #expect(await eventually(timeout: .seconds(10)) { alsoProtected.log.contains("authenticate differently") }, "\(alsoProtected.log)")
        let warning = alsoProtected.log.split(separator: "\n").first { $0.contains("authenticate differently") } ?? ""
        #expect(warning.contains(open.nodeID) && !warning.contains(protected.nodeID), "\(warning)")
    }
}
