import NIOCore
import NIOHTTP1

/// An answer to a plain HTTP request.
struct HTTPAnswer: Sendable {
    var status: HTTPResponseStatus
    var headers: HTTPHeaders
    var body: ByteBuffer
    /// A body written as it comes (server-sent events) instead of ``body``; the connection closes when it ends.
    var stream: AsyncStream<ByteBuffer>? = nil
    /// Close the connection after this answer (the request's body was not read whole).
    var closesConnection = false

    static func text(_ status: HTTPResponseStatus, _ text: String, headers: HTTPHeaders = [:]) -> HTTPAnswer {
        var all = headers
        all.add(name: "Content-Type", value: "text/plain; charset=utf-8")
        return HTTPAnswer(status: status, headers: all, body: ByteBuffer(string: text))
    }
}

/// A plain HTTP request as the node's answers see it.
struct HTTPRequest: Sendable {
    var head: HTTPRequestHead
    /// The body, when one was sent and fit ``HTTPRequestHandler``'s limit.
    var body: ByteBuffer?
    /// The body was larger than the limit: it was not kept (answer 413).
    var bodyTooLarge = false

    /// The path without the query.
    var path: String {
        String(head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? "/")
    }

    /// The query string's parameters.
    var query: [String: String] {
        guard let mark = head.uri.firstIndex(of: "?") else { return [:] }
        return Scope.parseQuery(head.uri[head.uri.index(after: mark)...])
    }
}

/// Serves the plain HTTP requests of a connection that did not upgrade (pages, health, metrics, the HTTP
/// API, and the reasons a WebSocket handshake was refused). Each request is answered by `respond` in a task
/// of its own; NIO's pipelining handler keeps answers in request order.
///
/// A connection must send a whole request head within `headTimeout` of connecting or of its previous
/// answer, or it is closed (sockets that send nothing, or a byte a second); a body must arrive within
/// `bodyTimeout` of its head. Bodies are kept up to `maxBodySize` bytes: a larger one (declared or sent)
/// is read and thrown away, and the request is answered with `bodyTooLarge` set and the connection closed;
/// with `Expect: 100-continue` it is answered at once, before the client sends it. Bytes the HTTP parser
/// refuses get 431 (headers too large) or 400, then the socket closes.
final class HTTPRequestHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let respond: @Sendable (HTTPRequest, (any Error)?) async -> HTTPAnswer
    private let headTimeout: TimeAmount
    private let bodyTimeout: TimeAmount
    private let maxBodySize: Int
    private let onTimeout: @Sendable () -> Void
    private let onBadRequest: @Sendable () -> Void
    private var request: HTTPRequest?
    /// The current request was answered early (a body refused before it was sent): ignore the rest of it.
    private var answeredEarly = false
    /// Why the WebSocket upgrade of the current request failed, if it did.
    private var upgradeError: (any Error)?
    private var timeout: Scheduled<Void>?

    init(
        headTimeout: TimeAmount,
        bodyTimeout: TimeAmount = .seconds(30),
        maxBodySize: Int = 1024 * 1024,
        onTimeout: @escaping @Sendable () -> Void,
        onBadRequest: @escaping @Sendable () -> Void,
        respond: @escaping @Sendable (HTTPRequest, (any Error)?) async -> HTTPAnswer
    ) {
        self.headTimeout = headTimeout
        self.bodyTimeout = bodyTimeout
        self.maxBodySize = maxBodySize
        self.onTimeout = onTimeout
        self.onBadRequest = onBadRequest
        self.respond = respond
    }

    func handlerAdded(context: ChannelHandlerContext) {
        armTimeout(context: context, headTimeout)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timeout?.cancel()
        timeout = nil
    }

    private func armTimeout(context: ChannelHandlerContext, _ amount: TimeAmount) {
        timeout?.cancel()
        let channel = context.channel
        let onTimeout = self.onTimeout
        timeout = context.eventLoop.scheduleTask(in: amount) {
            onTimeout()
            channel.close(promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            timeout?.cancel()
            timeout = nil
            answeredEarly = false
            var request = HTTPRequest(head: head)
            let declared = head.headers.first(name: "content-length").flatMap { Int($0) }
            let hasBody = (declared ?? 0) > 0 || head.headers.first(name: "transfer-encoding") != nil
            if let declared, declared > maxBodySize { request.bodyTooLarge = true }
            if hasBody { armTimeout(context: context, bodyTimeout) }
            if head.headers.first(name: "expect")?.lowercased() == "100-continue" {
                if request.bodyTooLarge {
                    // Refused before the client sends it; the connection closes, so the unsent body does not matter.
                    answeredEarly = true
                    answer(request, context: context)
                    return
                }
                context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .continue))), promise: nil)
            }
            self.request = request
        case .body(var part):
            guard var request, !request.bodyTooLarge else { return }
            if (request.body?.readableBytes ?? 0) + part.readableBytes > maxBodySize {
                request.bodyTooLarge = true
                request.body = nil
            } else if request.body == nil {
                request.body = part
            } else {
                request.body!.writeBuffer(&part)
            }
            self.request = request
        case .end:
            if answeredEarly {
                answeredEarly = false
                return
            }
            guard let request else { return }
            self.request = nil
            answer(request, context: context)
        }
    }

    private func answer(_ request: HTTPRequest, context: ChannelHandlerContext) {
        timeout?.cancel()
        timeout = nil
        let error = upgradeError
        upgradeError = nil
        let respond = self.respond
        let bound = NIOLoopBound((handler: self, context: context), eventLoop: context.eventLoop)
        context.eventLoop.makeFutureWithTask { await respond(request, error) }.whenSuccess { answer in
            let (handler, context) = bound.value
            var answer = answer
            if request.bodyTooLarge { answer.closesConnection = true }
            if let stream = answer.stream {
                Self.stream(answer, stream, for: request.head, on: context)
                return
            }
            Self.write(answer, for: request.head, on: context)
            if request.head.isKeepAlive, !answer.closesConnection { handler.armTimeout(context: context, handler.headTimeout) }
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
        let keepAlive = request.isKeepAlive && !answer.closesConnection
        if !keepAlive { headers.replaceOrAdd(name: "Connection", value: "close") }
        context.write(NIOAny(HTTPServerResponsePart.head(HTTPResponseHead(version: request.version, status: answer.status, headers: headers))), promise: nil)
        if request.method != .HEAD { context.write(NIOAny(HTTPServerResponsePart.body(.byteBuffer(answer.body))), promise: nil) }
        let written = context.writeAndFlush(NIOAny(HTTPServerResponsePart.end(nil)))
        let channel = context.channel
        if !keepAlive { written.whenComplete { _ in channel.close(promise: nil) } }
    }

    /// Writes the head, then each chunk of the stream as it comes, flushed; ends the response and closes
    /// the connection when the stream ends, and ends the stream when the client goes away. A chunk that
    /// comes while the client is not reading is dropped: streams carry snapshots, and the next one replaces it.
    private static func stream(_ answer: HTTPAnswer, _ chunks: AsyncStream<ByteBuffer>, for request: HTTPRequestHead, on context: ChannelHandlerContext) {
        var headers = answer.headers
        headers.remove(name: "Content-Length")
        headers.replaceOrAdd(name: "Connection", value: "close")
        context.writeAndFlush(NIOAny(HTTPServerResponsePart.head(HTTPResponseHead(version: request.version, status: answer.status, headers: headers))), promise: nil)
        let channel = context.channel
        let writer = Task {
            for await chunk in chunks {
                guard channel.isActive else { break }
                if channel.isWritable { channel.writeAndFlush(HTTPServerResponsePart.body(.byteBuffer(chunk)), promise: nil) }
            }
            channel.writeAndFlush(HTTPServerResponsePart.end(nil)).whenComplete { _ in channel.close(promise: nil) }
        }
        channel.closeFuture.whenComplete { _ in writer.cancel() }
    }
}

@available(*, unavailable)
extension HTTPRequestHandler: Sendable {}
