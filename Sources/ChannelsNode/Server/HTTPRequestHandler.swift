import NIOCore
import NIOHTTP1

/// An answer to a plain HTTP request.
struct HTTPAnswer: Sendable {
    var status: HTTPResponseStatus
    var headers: HTTPHeaders
    var body: ByteBuffer

    static func text(_ status: HTTPResponseStatus, _ text: String, headers: HTTPHeaders = [:]) -> HTTPAnswer {
        var all = headers
        all.add(name: "Content-Type", value: "text/plain; charset=utf-8")
        return HTTPAnswer(status: status, headers: all, body: ByteBuffer(string: text))
    }
}

/// Serves the plain HTTP requests of a connection that did not upgrade (pages, health, metrics, and the
/// reasons a WebSocket handshake was refused). Each request is answered by `respond` in a task of its own;
/// NIO's pipelining handler keeps answers in request order.
///
/// A connection must send a whole request head within `headTimeout` of connecting or of its previous
/// answer, or it is closed (sockets that send nothing, or a byte a second). Bytes the HTTP parser refuses
/// get 431 (headers too large) or 400, then the socket closes.
final class HTTPRequestHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let respond: @Sendable (HTTPRequestHead, (any Error)?) async -> HTTPAnswer
    private let headTimeout: TimeAmount
    private let onTimeout: @Sendable () -> Void
    private let onBadRequest: @Sendable () -> Void
    private var head: HTTPRequestHead?
    /// Why the WebSocket upgrade of the current request failed, if it did.
    private var upgradeError: (any Error)?
    private var timeout: Scheduled<Void>?

    init(
        headTimeout: TimeAmount,
        onTimeout: @escaping @Sendable () -> Void,
        onBadRequest: @escaping @Sendable () -> Void,
        respond: @escaping @Sendable (HTTPRequestHead, (any Error)?) async -> HTTPAnswer
    ) {
        self.headTimeout = headTimeout
        self.onTimeout = onTimeout
        self.onBadRequest = onBadRequest
        self.respond = respond
    }

    func handlerAdded(context: ChannelHandlerContext) {
        armTimeout(context: context)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timeout?.cancel()
        timeout = nil
    }

    private func armTimeout(context: ChannelHandlerContext) {
        timeout?.cancel()
        let channel = context.channel
        let onTimeout = self.onTimeout
        timeout = context.eventLoop.scheduleTask(in: headTimeout) {
            onTimeout()
            channel.close(promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            timeout?.cancel()
            timeout = nil
            self.head = head
        case .body:
            break
        case .end:
            guard let head else { return }
            self.head = nil
            let error = upgradeError
            upgradeError = nil
            let respond = self.respond
            let bound = NIOLoopBound((handler: self, context: context), eventLoop: context.eventLoop)
            context.eventLoop.makeFutureWithTask { await respond(head, error) }.whenSuccess { answer in
                let (handler, context) = bound.value
                Self.write(answer, for: head, on: context)
                if head.isKeepAlive { handler.armTimeout(context: context) }
            }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A refused WebSocket upgrade: the request follows, and its answer says why.
        if error is WebSocketHandshakeError {
            upgradeError = error
            return
        }
        if let error = error as? HTTPParserError {
            onBadRequest()
            let (status, text): (HTTPResponseStatus, String) =
                switch error {
                case .headerOverflow: (.requestHeaderFieldsTooLarge, "request headers too large\n")
                default: (.badRequest, "malformed HTTP request\n")
                }
            var headers = HTTPHeaders([("Content-Type", "text/plain; charset=utf-8"), ("Connection", "close")])
            headers.add(name: "Content-Length", value: "\(text.utf8.count)")
            context.write(NIOAny(HTTPServerResponsePart.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
            context.write(NIOAny(HTTPServerResponsePart.body(.byteBuffer(ByteBuffer(string: text)))), promise: nil)
            let channel = context.channel
            context.writeAndFlush(NIOAny(HTTPServerResponsePart.end(nil))).whenComplete { _ in channel.close(promise: nil) }
            return
        }
        context.close(promise: nil)
    }

    private static func write(_ answer: HTTPAnswer, for request: HTTPRequestHead, on context: ChannelHandlerContext) {
        var headers = answer.headers
        headers.replaceOrAdd(name: "Content-Length", value: "\(answer.body.readableBytes)")
        let keepAlive = request.isKeepAlive
        if !keepAlive { headers.replaceOrAdd(name: "Connection", value: "close") }
        context.write(NIOAny(HTTPServerResponsePart.head(HTTPResponseHead(version: request.version, status: answer.status, headers: headers))), promise: nil)
        if request.method != .HEAD { context.write(NIOAny(HTTPServerResponsePart.body(.byteBuffer(answer.body))), promise: nil) }
        let written = context.writeAndFlush(NIOAny(HTTPServerResponsePart.end(nil)))
        let channel = context.channel
        if !keepAlive { written.whenComplete { _ in channel.close(promise: nil) } }
    }
}

@available(*, unavailable)
extension HTTPRequestHandler: Sendable {}
