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
    enum Handshake {
        case accept(ConsumerRouter.Route, Scope)
        case reject(HandshakeRejection)
        case notFound
    }

    func handshake(uri: String, headers: HTTPHeaders, clientAddress: String?, transport: Scope.Transport = .webSocket) async -> Handshake {
        let pathEnd = uri.firstIndex(of: "?") ?? uri.endIndex
        let path = uri[..<pathEnd]
        let query = pathEnd < uri.endIndex ? uri[uri.index(after: pathEnd)...] : ""
        guard let (route, parameters) = router.match(path) else { return .notFound }
        if draining.isSet {
            return .reject(HandshakeRejection(status: 503, reason: "node draining; connect again"))
        }
        var request = HandshakeRequest(
            scope: Scope(
                path: String(path),
                parameters: parameters,
                query: Scope.parseQuery(query),
                headers: headers.map { (name: $0.name.lowercased(), value: $0.value) },
                clientAddress: clientAddress,
                queryString: String(query),
                transport: transport
            )
        )
        for step in middleware {
            do {
                try await step.handshake(&request)
            } catch {
                return .reject(error)
            }
        }
        return .accept(route, request.scope)
    }

    /// Runs the handshake and, when it passes, the consumer's `connect()`; `nil` for a path no consumer serves.
    func prepareConnection(_ head: HTTPRequestHead, channel: any Channel, ticket: ConnectionTicket) async -> ClientConnection? {
        let result = await handshake(uri: head.uri, headers: head.headers, clientAddress: channel.remoteAddress?.description)
        let connection: ClientConnection
        switch result {
        case .notFound:
            return nil
        case .reject(let rejection):
            // A browser cannot read the HTTP status of a refused WebSocket, but it can read a close code:
            // accept, then close at once with 4000 + the status (503 becomes 1013) and the reason.
            metrics.refusedHandshakes.increment()
            connection = makeConnection(channel: channel, route: nil, scope: Scope(path: head.uri))
            let code = rejection.status == 503 ? CloseCode.tryAgainLater : CloseCode.rejectedHandshake(status: rejection.status)
            connection.refuse(code: code, reason: rejection.reason)
            return connection
        case .accept(let route, let scope):
            // Counted from here until the socket closes, whichever way the connection ends.
            guard ticket.admit(to: admission) else {
                metrics.refusedAtLimit.increment()
                metrics.refusedHandshakes.increment()
                connection = makeConnection(channel: channel, route: nil, scope: scope)
                connection.refuse(
                    code: CloseCode.tryAgainLater,
                    reason: "node at its connection limit (\(configuration.maxConnections)); connect again"
                )
                return connection
            }
            connection = makeConnection(channel: channel, route: route, scope: scope)
            await connection.prepare()
            // The upgrade may still fail (the client went away): then nobody runs the connection.
            ticket.prepared(connection)
            return connection
        }
    }

    func makeConnection(channel: any Channel, route: ConsumerRouter.Route?, scope: Scope) -> ClientConnection {
        ClientConnection(channel: channel, route: route, scope: scope, environment: connectionEnvironment)
    }

    /// What the node's connections share; made once, with the node.
    static func connectionEnvironment(
        configuration: NodeConfiguration, layer: any InboxChannelLayer, metrics: NodeMetrics, logger: Logger, warnings: WarningLimiter,
        pressure: PublishPressure, connections: ConnectionRegistry
    ) -> ConnectionEnvironment {
        ConnectionEnvironment(
            layer: layer, limits: configuration.limits, metrics: metrics, logger: logger, warnings: warnings,
            pingInterval: configuration.pingInterval, flushDelay: configuration.flushDelay, pressure: pressure,
            onClosed: { [connections, metrics, logger, logConnections = configuration.logConnections] connection in
                connections.remove(connection)
                metrics.connectionClosed()
                if logConnections {
                    logger.info(
                        "connection closed",
                        metadata: [
                            "path": "\(connection.scope.path)", "client": "\(connection.scope.clientAddress ?? "-")", "channel": "\(connection.channelName)",
                            "code": "\(connection.lifecycle.endCode)",
                        ]
                    )
                }
            }
        )
    }
}
