import NIOCore
import NIOSSL
import NIOTLS

/// Sits right after swift-nio-ssl's client handler: completes a promise when the TLS handshake is done (or
/// fails), and passes every later TLS error on as a ``RedisError`` that says what went wrong, so the RESP
/// handlers above report it instead of a raw BoringSSL error stack.
final class RedisTLSHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private var handshake: EventLoopPromise<Void>?
    private var closedDuringHandshake: RedisError?
    private let address: String
    private let host: String
    private let settings: RedisConfiguration.TLS

    init(handshake: EventLoopPromise<Void>, address: String, host: String, settings: RedisConfiguration.TLS) {
        self.handshake = handshake
        self.address = address
        self.host = host
        self.settings = settings
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? TLSUserEvent, case .handshakeCompleted = event, let handshake {
            if let failure = nameMismatch(context: context) {
                self.handshake = nil
                handshake.fail(failure)
                context.fireErrorCaught(failure)
                context.close(promise: nil)
                return
            }
            self.handshake = nil
            handshake.succeed()
        }
        context.fireUserInboundEventTriggered(event)
    }

    /// The error when the expected name is a DNS name that the certificate does not carry (NIOSSL accepted it
    /// for an IP entry matching the peer's address).
    private func nameMismatch(context: ChannelHandlerContext) -> RedisError? {
        guard let expected = RedisTLS.serverHostname(settings, host: host),
            let tls = try? context.pipeline.syncOperations.handler(type: NIOSSLClientHandler.self),
            let certificate = tls.peerCertificate
        else { return nil }
        let (matches, names) = RedisTLS.certificate(certificate, names: expected)
        if matches { return nil }
        let listed = names.isEmpty ? "no DNS names" : "the names " + names.map { "'\($0)'" }.joined(separator: ", ")
        return RedisError(
            .tlsHandshakeFailed,
            "the TLS certificate of Redis at \(address) is not valid for '\(expected)' (it lists \(listed)); connect by a name the certificate lists, or set servername= to one of them"
        )
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let mapped: any Error =
            RedisTLS.mapError(error, address: address, settings: settings, host: host, duringHandshake: handshake != nil) ?? error
        if let handshake {
            // "The connection closed" may be followed by the reason (the server's bytes were not TLS), which says
            // more: a closed connection waits for channelInactive, a definite verdict fails the handshake at once.
            if let redisError = mapped as? RedisError, redisError.code == .connectionClosed {
                if closedDuringHandshake == nil { closedDuringHandshake = redisError }
            } else {
                self.handshake = nil
                handshake.fail(mapped)
            }
        }
        context.fireErrorCaught(mapped)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if handshake != nil {
            // NIOSSL may still report why (bytes that were not TLS) after the close: give it this turn of the loop.
            context.eventLoop.assumeIsolated().execute { [self] in
                failHandshakeClosed()
            }
        }
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        failHandshakeClosed()
    }

    private func failHandshakeClosed() {
        guard let handshake else { return }
        self.handshake = nil
        handshake.fail(
            closedDuringHandshake
                ?? RedisError(
                    .connectionClosed,
                    "Redis at \(address) closed the connection during the TLS handshake: is that its tls-port, and does it require a client certificate (cert=, key=)?"
                )
        )
    }
}

@available(*, unavailable)
extension RedisTLSHandler: Sendable {}
