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
    /// Instead of an answer, the connection is handed over (an event stream served by a consumer): the HTTP
    /// handlers leave the pipeline, then this runs on the event loop to write the answer itself and add its handlers.
    var takeover: (@Sendable (ChannelPipeline.SynchronousOperations) throws -> Void)? = nil

    /// An answer that hands the connection over to `takeover`.
    static func handOver(_ takeover: @escaping @Sendable (ChannelPipeline.SynchronousOperations) throws -> Void) -> HTTPAnswer {
        HTTPAnswer(status: .ok, headers: [:], body: ByteBuffer(), takeover: takeover)
    }

    static func text(_ status: HTTPResponseStatus, _ text: String, headers: HTTPHeaders = [:]) -> HTTPAnswer {
        var all = headers
        all.add(name: "Content-Type", value: "text/plain; charset=utf-8")
        return HTTPAnswer(status: status, headers: all, body: ByteBuffer(string: text))
    }
}

/// A plain HTTP request as the node's answers see it.
struct HTTPRequest: Sendable {
    var head: HTTPRequestHead
    /// The body, when the head's ``HeadDecision`` asked for it and one was sent.
    var body: ByteBuffer?
    /// The body was larger than the limit its ``HeadDecision`` set: it was not kept (answer 413).
    var bodyTooLarge = false
    /// The API key the head carried, once ``ServerAPI`` checked it and charged its rate.
    var apiKey: Int?
    /// What the body holds of the node's ``BodyBudget``, given back once the request is answered.
    var bodyReservation: BodyBudget.Reservation?

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

/// What to do with a request, decided from its head before any of its body is read.
enum HeadDecision: Sendable {
    /// Read the body, at most `limit` bytes; a larger one is thrown away as it comes and the request is
    /// answered with ``HTTPRequest/bodyTooLarge`` set.
    case readBody(limit: Int)
    /// The route takes no body: bytes sent as one are thrown away as they come; the request is answered after them.
    case ignoreBody
    /// Answer now, from the head. A body the client sends anyway is thrown away as it comes, and the
    /// connection closes after it (or at once with `Expect: 100-continue`: the client has not sent it).
    case answer(HTTPAnswer)
}

/// Serves the plain HTTP requests of a connection that did not upgrade (pages, health, metrics, the HTTP
/// API, and the reasons a WebSocket handshake was refused). Each request is answered by `respond` in a task
/// of its own; NIO's pipelining handler keeps answers in request order.
///
/// Each head is first shown to `examine`, which decides before any body byte is read (route, method,
/// key, `Content-Length`): only a request it asks the body of has its body kept, up to the limit it gives;
/// every other body is thrown away as it arrives, so no client makes the node buffer what it should not.
/// A request refused from its head is answered at once; when a body follows, the connection closes after
/// it (reading it to its end first, so the client sees the answer instead of a reset).
///
/// A connection must send a whole request head within `headTimeout` of connecting or of its previous
/// answer, or it is closed (sockets that send nothing, or a byte a second); a body must arrive within
/// `bodyTimeout` of its head. Bytes the HTTP parser refuses get 431 (headers too large) or 400, then the
/// socket closes.
final class HTTPRequestHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let examine: @Sendable (inout HTTPRequest) -> HeadDecision
    private let respond: @Sendable (HTTPRequest, (any Error)?) async -> HTTPAnswer
    private let headTimeout: TimeAmount
    private let bodyTimeout: TimeAmount
    private let onTimeout: @Sendable () -> Void
    private let onBadRequest: @Sendable () -> Void
    /// Called when an answer starts a stream: the connection stops being a handshake in progress.
    private let onStream: @Sendable () -> Void
    private var request: HTTPRequest?
    private var body = BodyState.none
    /// Why the WebSocket upgrade of the current request failed, if it did.
    private var upgradeError: (any Error)?
    private var timeout: Scheduled<Void>?

    /// What becomes of the current request's body parts.
    private enum BodyState {
        /// Between requests.
        case none
        /// Kept, up to `limit` bytes.
        case reading(limit: Int)
        /// Thrown away; the request is answered at its end.
        case ignoring
        /// The request was answered from its head: thrown away. With `closeAtEnd` the connection closes
        /// once the request ended and the answer was written; else the next request may follow.
        case answered(written: EventLoopFuture<Void>, closeAtEnd: Bool, keepAlive: Bool)
    }

    init(
        headTimeout: TimeAmount,
        bodyTimeout: TimeAmount = .seconds(30),
        onTimeout: @escaping @Sendable () -> Void,
        onBadRequest: @escaping @Sendable () -> Void,
        onStream: @escaping @Sendable () -> Void = {},
        examine: @escaping @Sendable (inout HTTPRequest) -> HeadDecision,
        respond: @escaping @Sendable (HTTPRequest, (any Error)?) async -> HTTPAnswer
    ) {
        self.headTimeout = headTimeout
        self.bodyTimeout = bodyTimeout
        self.onTimeout = onTimeout
        self.onBadRequest = onBadRequest
        self.onStream = onStream
        self.examine = examine
        self.respond = respond
    }

    func handlerAdded(context: ChannelHandlerContext) {
        armTimeout(context: context, headTimeout)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timeout?.cancel()
        timeout = nil
        request?.bodyReservation?.release()
        request = nil
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
            var request = HTTPRequest(head: head)
            let decision = examine(&request)
            let declared = head.headers.first(name: "content-length").flatMap { Int($0) }
            let hasBody = (declared ?? 0) > 0 || head.headers.contains(name: "transfer-encoding")
            let expectsContinue = head.headers.first(name: "expect")?.lowercased() == "100-continue"
            if hasBody { armTimeout(context: context, bodyTimeout) }
            switch decision {
            case .answer(var answer):
                request.bodyReservation?.release()
                upgradeError = nil
                guard hasBody else {
                    let written = Self.write(answer, for: head, on: context, closing: true)
                    body = .answered(written: written, closeAtEnd: false, keepAlive: head.isKeepAlive && !answer.closesConnection)
                    return
                }
                // The body is not wanted: the connection closes once it ended, so the client reads the answer
                // rather than a reset; at once when the client waits for 100 Continue (it has not sent it).
                answer.closesConnection = true
                let written = Self.write(answer, for: head, on: context, closing: expectsContinue)
                body = .answered(written: written, closeAtEnd: true, keepAlive: false)
                return
            case .readBody(let limit):
                body = .reading(limit: limit)
            case .ignoreBody:
                body = .ignoring
            }
            if expectsContinue {
                context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .continue))), promise: nil)
            }
            self.request = request
        case .body(var part):
            guard case .reading(let limit) = body, var request, !request.bodyTooLarge else { return }
            if (request.body?.readableBytes ?? 0) + part.readableBytes > limit {
                request.bodyTooLarge = true
                request.body = nil
            } else if request.body == nil {
                request.body = part
            } else {
                request.body!.writeBuffer(&part)
            }
            self.request = request
        case .end:
            let state = body
            body = .none
            switch state {
            case .answered(let written, let closeAtEnd, let keepAlive):
                timeout?.cancel()
                timeout = nil
                if closeAtEnd {
                    let channel = context.channel
                    written.whenComplete { _ in channel.close(promise: nil) }
                } else if keepAlive {
                    armTimeout(context: context, headTimeout)
                }
            case .reading, .ignoring, .none:
                guard let request else { return }
                self.request = nil
                answer(request, context: context)
            }
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
            request.bodyReservation?.release()
            var answer = answer
            if request.bodyTooLarge { answer.closesConnection = true }
            if let stream = answer.stream {
                handler.onStream()
                Self.stream(answer, stream, for: request.head, on: context)
                return
            }
            if let takeover = answer.takeover {
                handler.onStream()
                handler.handOver(context: context, to: takeover)
                return
            }
            Self.write(answer, for: request.head, on: context, closing: true)
            if request.head.isKeepAlive, !answer.closesConnection { handler.armTimeout(context: context, handler.headTimeout) }
        }
    }

    /// Takes the HTTP handlers out of the pipeline and gives the connection to `takeover`. A sink added first
    /// takes whatever they still hold or parse (a client of a stream sends nothing more), so no later handler
    /// sees HTTP parts.
    private func handOver(context: ChannelHandlerContext, to takeover: (ChannelPipeline.SynchronousOperations) throws -> Void) {
        let operations = context.pipeline.syncOperations
        guard context.channel.isActive else { return }
        do {
            try operations.addHandler(InboundSink())
            operations.removeHandler(context: context, promise: nil)
            if let upgrade = try? operations.context(handlerType: HTTPServerUpgradeHandler.self) {
                operations.removeHandler(context: upgrade, promise: nil)
            }
            if let pipelining = try? operations.context(handlerType: HTTPServerPipelineHandler.self) {
                operations.removeHandler(context: pipelining, promise: nil)
            }
            if let validator = try? operations.context(handlerType: NIOHTTPResponseHeadersValidator.self) {
                operations.removeHandler(context: validator, promise: nil)
            }
            if let decoder = try? operations.context(handlerType: ByteToMessageHandler<HTTPRequestDecoder>.self) {
                operations.removeHandler(context: decoder, promise: nil)
            }
            if let encoder = try? operations.context(handlerType: HTTPResponseEncoder.self) {
                operations.removeHandler(context: encoder, promise: nil)
            }
            try takeover(operations)
        } catch {
            context.channel.close(promise: nil)
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

    /// Writes a whole answer; with `closing`, closes the connection after it unless it stays alive.
    @discardableResult
    private static func write(_ answer: HTTPAnswer, for request: HTTPRequestHead, on context: ChannelHandlerContext, closing: Bool) -> EventLoopFuture<Void> {
        var headers = answer.headers
        headers.replaceOrAdd(name: "Content-Length", value: "\(answer.body.readableBytes)")
        let keepAlive = request.isKeepAlive && !answer.closesConnection
        if !keepAlive { headers.replaceOrAdd(name: "Connection", value: "close") }
        context.write(NIOAny(HTTPServerResponsePart.head(HTTPResponseHead(version: request.version, status: answer.status, headers: headers))), promise: nil)
        if request.method != .HEAD { context.write(NIOAny(HTTPServerResponsePart.body(.byteBuffer(answer.body))), promise: nil) }
        let written = context.writeAndFlush(NIOAny(HTTPServerResponsePart.end(nil)))
        let channel = context.channel
        if closing, !keepAlive { written.whenComplete { _ in channel.close(promise: nil) } }
        return written
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

/// Takes every inbound read and passes none on: after a hand-over, what the client still sends (or the
/// HTTP handlers held) has no reader.
final class InboundSink: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}
}
