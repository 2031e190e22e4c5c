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
final class HTTPRequestHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let respond: @Sendable (HTTPRequestHead, (any Error)?) async -> HTTPAnswer
    private var head: HTTPRequestHead?
    /// Why the WebSocket upgrade of the current request failed, if it did.
    private var upgradeError: (any Error)?

    init(respond: @escaping @Sendable (HTTPRequestHead, (any Error)?) async -> HTTPAnswer) {
        self.respond = respond
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
        case .body:
            break
        case .end:
            guard let head else { return }
            self.head = nil
            let error = upgradeError
            upgradeError = nil
            let respond = self.respond
            let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
            context.eventLoop.makeFutureWithTask { await respond(head, error) }.whenSuccess { answer in
                Self.write(answer, for: head, on: bound.value)
            }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A refused WebSocket upgrade: the request follows, and its answer says why.
        if error is WebSocketHandshakeError {
            upgradeError = error
            return
        }
        context.fireErrorCaught(error)
    }

    private static func write(_ answer: HTTPAnswer, for request: HTTPRequestHead, on context: ChannelHandlerContext) {
        var headers = answer.headers
        headers.replaceOrAdd(name: "Content-Length", value: "\(answer.body.readableBytes)")
        let keepAlive = request.isKeepAlive
        if !keepAlive { headers.replaceOrAdd(name: "Connection", value: "close") }
        context.write(NIOAny(HTTPServerResponsePart.head(HTTPResponseHead(version: request.version, status: answer.status, headers: headers))), promise: nil)
        if request.method != .HEAD { context.write(NIOAny(HTTPServerResponsePart.body(.byteBuffer(answer.body))), promise: nil) }
        let written = context.writeAndFlush(NIOAny(HTTPServerResponsePart.end(nil)))
        if !keepAlive { written.whenComplete { _ in context.close(promise: nil) } }
    }
}

@available(*, unavailable)
extension HTTPRequestHandler: Sendable {}
