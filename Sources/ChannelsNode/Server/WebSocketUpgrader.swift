import Crypto
import FoundationEssentials
import NIOCore
import NIOHTTP1

/// The WebSocket opening handshake (RFC 6455 4.2) as an HTTP upgrader.
///
/// It installs only a frame decoder: the node writes frames it encoded itself, once per message for a
/// whole group, so no frame encoder sits in the pipeline. A request that is not a valid handshake fails
/// the upgrade with a ``WebSocketHandshakeError``; the HTTP handler then answers it with 400 or 426.
final class WebSocketUpgrader: HTTPServerProtocolUpgrader, Sendable {
    let supportedProtocol = "websocket"
    // Checked in buildUpgradeResponse, so that a bad handshake gets its own answer rather than a generic one.
    let requiredUpgradeHeaders: [String] = []

    private let shouldUpgrade: @Sendable (any Channel, HTTPRequestHead) -> EventLoopFuture<HTTPHeaders?>
    private let installHandlers: @Sendable (any Channel, HTTPRequestHead) -> EventLoopFuture<Void>

    /// - Parameters:
    ///   - shouldUpgrade: the headers the answer adds, or `nil` to leave the request to the HTTP handler (an
    ///     unknown path); a failure with a ``WebSocketHandshakeError`` is answered by that handler too.
    ///   - installHandlers: adds the connection's handlers after the frame decoder.
    init(
        shouldUpgrade: @escaping @Sendable (any Channel, HTTPRequestHead) -> EventLoopFuture<HTTPHeaders?>,
        installHandlers: @escaping @Sendable (any Channel, HTTPRequestHead) -> EventLoopFuture<Void>
    ) {
        self.shouldUpgrade = shouldUpgrade
        self.installHandlers = installHandlers
    }

    func buildUpgradeResponse(
        channel: any Channel, upgradeRequest: HTTPRequestHead, initialResponseHeaders: HTTPHeaders
    ) -> EventLoopFuture<HTTPHeaders> {
        let accept: String
        do {
            accept = try Self.acceptValue(for: upgradeRequest.headers)
        } catch {
            return channel.eventLoop.makeFailedFuture(error)
        }
        return shouldUpgrade(channel, upgradeRequest).flatMapThrowing { extra in
            guard let extra else { throw WebSocketHandshakeError.notAWebSocketPath }
            var headers = initialResponseHeaders
            headers.add(contentsOf: extra)
            headers.replaceOrAdd(name: "Upgrade", value: "websocket")
            headers.replaceOrAdd(name: "Connection", value: "upgrade")
            headers.add(name: "Sec-WebSocket-Accept", value: accept)
            return headers
        }
    }

    func upgrade(context: ChannelHandlerContext, upgradeRequest: HTTPRequestHead) -> EventLoopFuture<Void> {
        installHandlers(context.channel, upgradeRequest)
    }

    /// `Sec-WebSocket-Accept` for a request, or why the request is not a valid handshake.
    static func acceptValue(for headers: HTTPHeaders) throws(WebSocketHandshakeError) -> String {
        let versions = headers["sec-websocket-version"]
        guard versions.count == 1, versions[0] == "13" else { throw .unsupportedVersion }
        let keys = headers["sec-websocket-key"]
        guard keys.count == 1 else { throw keys.isEmpty ? .missingKey : .duplicateKey }
        let key = String(keys[0].drop { $0 == " " }.reversed().drop { $0 == " " }.reversed())
        guard let decoded = Data(base64Encoded: key), decoded.count == 16 else { throw .invalidKey }
        let digest = Insecure.SHA1.hash(data: Data((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").utf8))
        return Data(digest).base64EncodedString()
    }
}

/// Why a request is not a WebSocket handshake the node takes; ``reason`` goes in the HTTP answer.
enum WebSocketHandshakeError: Error {
    case unsupportedVersion
    case missingKey
    case duplicateKey
    case invalidKey
    case notAWebSocketPath
    /// The consumer refused the handshake with this HTTP status (``ConnectDecision/deny(status:reason:)``).
    case denied(status: Int, reason: String)

    var reason: String {
        switch self {
        case .unsupportedVersion: "unsupported WebSocket version: this node speaks version 13 (Sec-WebSocket-Version: 13)"
        case .missingKey: "missing Sec-WebSocket-Key header"
        case .duplicateKey: "more than one Sec-WebSocket-Key header"
        case .invalidKey: "Sec-WebSocket-Key must be 16 bytes in base64"
        case .notAWebSocketPath: "not a WebSocket path"
        case .denied(_, let reason): reason
        }
    }
}
