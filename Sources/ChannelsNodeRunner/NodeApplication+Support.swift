import ArgumentParser
import ChannelLayersRedis
import ChannelsNode
import Foundation
import Logging
import Synchronization

extension NodeApplication {
    /// Authentication is per node: a node without the JWT settings of its peers opens their rooms to anyone
    /// through Redis. Once the registry has this node's first heartbeat, compare with the live peers' and warn.
    static func warnAboutPeersAuthenticatingDifferently(_ layer: RunnableRedisLayer, nodeID: String, ours: String, logger: Logger) async {
        try? await Task.sleep(for: .seconds(2))
        let others = await layer.peers(authenticatingOtherThan: ours, nodeID: nodeID)
        guard !others.isEmpty else { return }
        logger.warning(
            "nodes on this Redis authenticate differently from this one; every node of a cluster needs the same JWT settings, or clients of the weaker node reach the others' rooms through Redis",
            metadata: ["nodes": "\(others)", "this_node": "\(ours == "none" ? "no authentication" : "JWT")"]
        )
    }

    /// The JWT middleware when a key is configured, and the fingerprint of the settings (`none` without);
    /// a key that cannot be read stops the node with one line.
    func authentication(setting: (String?, String) -> String?) async throws -> (middleware: [any HandshakeMiddleware], fingerprint: String) {
        func read(_ path: String, _ what: String) throws -> String {
            guard let contents = FileManager.default.contents(atPath: path), let text = String(data: contents, encoding: .utf8) else {
                throw ValidationError("cannot read the \(what) file \(path)")
            }
            return text
        }
        var configuration = JWTAuthMiddleware.Configuration()
        if let path = options.jwtHs256SecretFile ?? setting(nil, "CHANNELS_JWT_HS256_SECRET_FILE") {
            configuration.hs256Secret = try read(path, "HS256 secret").trimmingCharacters(in: .whitespacesAndNewlines)
        } else {
            configuration.hs256Secret = setting(nil, "CHANNELS_JWT_HS256_SECRET")
        }
        if let path = setting(options.jwtRs256PublicKeyFile ?? options.jwtRs256PublicKey, "CHANNELS_JWT_RS256_PUBLIC_KEY_FILE") {
            configuration.rs256PublicKeyPEM = try read(path, "RS256 public key")
        }
        configuration.issuer = setting(options.jwtIssuer, "CHANNELS_JWT_ISSUER")
        configuration.audience = setting(options.jwtAudience, "CHANNELS_JWT_AUDIENCE")
        configuration.hs256KeyID = setting(options.jwtHs256KeyId, "CHANNELS_JWT_HS256_KEY_ID")
        configuration.rs256KeyID = setting(options.jwtRs256KeyId, "CHANNELS_JWT_RS256_KEY_ID")
        if let text = setting(options.jwtMaxLifetime.map { String($0) }, "CHANNELS_JWT_MAX_LIFETIME") {
            guard let seconds = Double(text), seconds > 0 else {
                throw ValidationError("--jwt-max-lifetime must be a positive number of seconds, not '\(text)'")
            }
            configuration.maxLifetime = .milliseconds(Int64(seconds * 1000))
        }
        guard configuration.hs256Secret != nil || configuration.rs256PublicKeyPEM != nil else { return ([], "none") }
        do {
            return ([try await JWTAuthMiddleware(configuration: configuration)], configuration.fingerprint)
        } catch {
            throw ValidationError(error.description)
        }
    }
}

/// Lets the layer's registry ask the node for its connection count, though the node is made after the layer.
final class NodeReference: Sendable {
    private let node = Mutex<ChannelsNode?>(nil)
    func set(_ value: ChannelsNode) { node.withLock { $0 = value } }
    var count: Int? { node.withLock { $0?.connectionCount } }
}
