import ChannelLayers
import ChannelsProtocol
import CoreMetrics
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket
import ServiceLifecycle
import Synchronization

extension ChannelsNode {
    /// Decides a request from its head, before any of its body is read: only the API's authenticated
    /// requests to routes that take a body have one read; every other body is thrown away as it comes.
    func examine(_ request: inout HTTPRequest) -> HeadDecision {
        let path = request.path
        if path == "/api" || path.hasPrefix("/api/") {
            guard let api else { return .answer(APIError.apiOff.answer) }
            return api.examine(&request)
        }
        guard request.head.method == .GET || request.head.method == .HEAD else {
            return .answer(.text(.methodNotAllowed, "only GET is served here\n", headers: ["Allow": "GET, HEAD"]))
        }
        return .ignoreBody
    }

    func answer(_ request: HTTPRequest, upgradeError: (any Error)?, channel: any Channel, ticket: ConnectionTicket) async -> HTTPAnswer {
        let head = request.head
        let path = request.path
        if path == "/api" || path.hasPrefix("/api/") {
            guard let api else { return APIError.apiOff.answer }
            return await api.answer(request)
        }
        if let file = Self.adminFiles[path] {
            guard api != nil else {
                return .text(.notFound, "the admin page is off on this node: start it with --api-key-file PATH (or CHANNELS_API_KEYS)\n")
            }
            return HTTPAnswer(
                status: .ok,
                headers: [
                    "Content-Type": file.type, "Cache-Control": "no-store", "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
                    "Content-Security-Policy":
                        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
                    "Referrer-Policy": "no-referrer",
                ],
                body: ByteBuffer(bytes: file.bytes)
            )
        }
        if let page = pages[path] {
            return HTTPAnswer(
                status: .ok, headers: ["Content-Type": page.contentType, "Cache-Control": "no-store"], body: ByteBuffer(string: page.body)
            )
        }
        switch path {
        case "/channels.js":
            return HTTPAnswer(
                status: .ok, headers: ["Content-Type": "text/javascript; charset=utf-8", "Cache-Control": "max-age=300"],
                body: ByteBuffer(bytes: PackageResources.channels_js)
            )
        case "/healthz":
            return .text(.ok, "ok\n")
        case "/readyz":
            if draining.isSet { return .text(.serviceUnavailable, "draining\n") }
            return probe.isPassing ? .text(.ok, "ready\n") : .text(.serviceUnavailable, "channel layer round trip failing\n")
        case "/metrics":
            guard let metricsExport else { return .text(.notFound, "metrics are not enabled\n") }
            metrics.update(from: layer.statistics)
            return HTTPAnswer(status: .ok, headers: ["Content-Type": "text/plain; version=0.0.4; charset=utf-8"], body: ByteBuffer(string: metricsExport()))
        default:
            break
        }
        if upgradeError == nil, asksForEventStream(head), router.match(Substring(path)) != nil {
            return await eventStream(request, channel: channel, ticket: ticket)
        }
        if case .denied(let status, let reason)? = upgradeError as? WebSocketHandshakeError {
            return .text(HTTPResponseStatus(statusCode: status), reason + "\n")
        }
        // A request to a WebSocket path that was not upgraded: say why.
        switch await handshake(uri: head.uri, headers: head.headers, clientAddress: nil) {
        case .notFound:
            return .text(.notFound, "not found\n")
        case .reject(let rejection):
            return .text(HTTPResponseStatus(statusCode: rejection.status), rejection.reason + "\n")
        case .accept:
            var handshakeError = upgradeError as? WebSocketHandshakeError
            if handshakeError == nil, head.headers["upgrade"].contains(where: { $0.lowercased() == "websocket" }) {
                // NIO skips the upgrader when a required header is missing: find out which.
                do { _ = try WebSocketUpgrader.acceptValue(for: head.headers) } catch { handshakeError = error }
            }
            switch handshakeError {
            case .unsupportedVersion:
                return .text(.upgradeRequired, WebSocketHandshakeError.unsupportedVersion.reason + "\n", headers: ["Sec-WebSocket-Version": "13"])
            case .some(let error):
                return .text(.badRequest, error.reason + "\n")
            case nil:
                return .text(.upgradeRequired, "this is a WebSocket endpoint: connect with a WebSocket client\n", headers: ["Sec-WebSocket-Version": "13"])
            }
        }
    }
}
