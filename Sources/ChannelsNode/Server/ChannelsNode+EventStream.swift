import ChannelsProtocol
import CoreMetrics
import Logging
import NIOCore
import NIOHTTP1

extension ChannelsNode {
    // MARK: - Consumers' paths as event streams

    /// A `GET` of a consumer's path that accepts `text/event-stream` (what a browser's `EventSource` sends):
    /// served as server-sent events rather than answered 426.
    func asksForEventStream(_ head: HTTPRequestHead) -> Bool {
        head.method == .GET && head.headers["accept"].contains { $0.lowercased().contains("text/event-stream") }
    }

    /// Runs the handshake and the consumer's `connect()` as for a WebSocket, then hands the connection over to
    /// a ``ClientConnection`` that writes events. A refusal is an HTTP status (an `EventSource` then stops);
    /// "try again later" (node draining, at its limit, the layer unavailable) is a stream that ends at once,
    /// so the browser reconnects by itself, through the load balancer, after `retry`.
    func eventStream(_ request: HTTPRequest, channel: any Channel, ticket: ConnectionTicket) async -> HTTPAnswer {
        let head = request.head
        switch await handshake(uri: head.uri, headers: head.headers, clientAddress: channel.remoteAddress?.description, transport: .eventStream) {
        case .notFound:
            return .text(.notFound, "not found\n")
        case .reject(let rejection):
            metrics.refusedHandshakes.increment()
            if rejection.status == 503 { return retryLater(rejection.reason) }
            return .text(HTTPResponseStatus(statusCode: rejection.status), rejection.reason + "\n")
        case .accept(let route, let scope):
            guard ticket.admit(to: admission) else {
                metrics.refusedAtLimit.increment()
                metrics.refusedHandshakes.increment()
                return retryLater("node at its connection limit (\(configuration.maxConnections)); connect again")
            }
            let connection = makeConnection(channel: channel, route: route, scope: scope)
            await connection.prepare()
            ticket.prepared(connection)
            if let denial = connection.denial {
                metrics.refusedHandshakes.increment()
                connection.abandon()
                return Self.refused(HTTPResponseStatus(statusCode: denial.status), denial.reason)
            }
            if !connection.accepted, let refusal = connection.refusal {
                metrics.refusedHandshakes.increment()
                connection.abandon()
                if refusal.code == CloseCode.tryAgainLater { return retryLater(refusal.reason) }
                return Self.refused(Self.status(refusedWith: refusal.code), refusal.reason)
            }
            let headers = connection.handshakeHeaders + corsHeaders(scope)
            let retry = Self.retryMilliseconds()
            return .handOver { [self] operations in
                guard channel.isActive else { throw ChannelError.ioOnClosedChannel }
                channel.writeAndFlush(ServerEvent.responseHead(headers: headers, retryMilliseconds: retry), promise: nil)
                try operations.addHandler(connection)
                connections.add(connection)
                metrics.connectionOpened()
                metrics.eventStreamsOpened.increment()
                if configuration.logConnections {
                    logger.info(
                        "connection opened",
                        metadata: [
                            "path": "\(connection.scope.path)", "client": "\(connection.scope.clientAddress ?? "-")", "user": "\(connection.scope.userID ?? "-")",
                            "transport": "eventstream",
                        ]
                    )
                }
            }
        }
    }

    /// A refusal after the connection was counted: the socket closes with the answer, which gives its place back.
    private static func refused(_ status: HTTPResponseStatus, _ reason: String) -> HTTPAnswer {
        var answer = HTTPAnswer.text(status, reason + "\n")
        answer.closesConnection = true
        return answer
    }

    /// A stream that says why and ends: the browser's `EventSource` reconnects after `retry`.
    private func retryLater(_ reason: String) -> HTTPAnswer {
        var body = ByteBuffer(string: "retry: \(Self.retryMilliseconds())\n\n")
        var close = ServerEvent.close(code: CloseCode.tryAgainLater, reason: reason)
        body.writeBuffer(&close)
        return HTTPAnswer(
            status: .ok, headers: ["Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-store"], body: body, closesConnection: true
        )
    }

    /// Cross-origin streams are readable only by the allowed origins (the handshake refused the others).
    private func corsHeaders(_ scope: Scope) -> [(name: String, value: String)] {
        guard let origin = scope.header("origin") else { return [] }
        if configuration.allowedOrigins.isEmpty || configuration.allowedOrigins.contains("*") {
            return [("Access-Control-Allow-Origin", "*")]
        }
        return [("Access-Control-Allow-Origin", origin), ("Access-Control-Allow-Credentials", "true"), ("Vary", "Origin")]
    }

    /// The HTTP status of a refusal a WebSocket client would get as a close code: 4000 + status as the
    /// status, a failing consumer 500, any other code 403 (as Daphne answers a consumer that closes before accepting).
    static func status(refusedWith code: UInt16) -> HTTPResponseStatus {
        switch code {
        case 4400..<4600: HTTPResponseStatus(statusCode: Int(code) - 4000)
        case CloseCode.internalError: .internalServerError
        default: .forbidden
        }
    }

    /// Between 1 and 3 seconds, different for each stream: after a node goes, its streams' browsers do not
    /// all come back in the same millisecond.
    static func retryMilliseconds() -> Int { Int.random(in: 1000..<3000) }
}
