import ChannelLayers
import ChannelsNode
import ChannelsProtocol
import CoreMetrics
import NIOCore
import OrderedCollections

/// The consumer of every bridged connection: it passes the connection's events to its worker and applies
/// the worker's actions (frames, closes, group calls) with the node's engine.
///
/// `connect()` picks a worker, sends it the ASGI scope and waits for the application's decision (accept or
/// close), applying its group calls on the way: once the client sees the socket open, the consumer's groups
/// are joined, as under Daphne. Every layer message no forward rule carries goes to the worker.
final class DjangoBridgeConsumer: WebSocketConsumer, AnyMessageConsumer {
    static var acceptsBinary: Bool { true }

    private let context: ConsumerContext
    private let bridge: DjangoBridge?
    private var connection: BridgedConnection?

    /// Only the bridge makes working ones (``DjangoBridge/install(in:)``); this one refuses with 503.
    init(context: ConsumerContext) {
        self.context = context
        self.bridge = nil
    }

    init(context: ConsumerContext, bridge: DjangoBridge) {
        self.context = context
        self.bridge = bridge
    }

    func connect() async throws -> ConnectDecision {
        guard let bridge else { return .deny(status: 503, reason: "no Django bridge is configured for this path") }
        // Django's consumer would be told of a WebSocket it does not have (its ASGI scope has no other type to say so).
        guard context.scope.transport == .webSocket else {
            return .deny(status: 406, reason: "this path is served by Django workers over WebSocket only; connect with a WebSocket")
        }
        let scope = ASGIScope.make(context.scope, server: bridge.configuration.server)
        var tried: Set<String> = []
        // A worker that drains says so (`reject`), one that dies is lost: both are tried once more elsewhere.
        for _ in 0..<2 {
            guard let worker = bridge.chooseWorker(excluding: tried) else { break }
            tried.insert(worker)
            guard let connection = bridge.open(context.channelName, worker: worker, handle: context.handle) else { break }
            connection.send(.connect(scope: scope))
            let outcome = await decision(of: connection, bridge: bridge)
            switch outcome {
            case .accept:
                self.connection = connection
                bridge.metrics.connectionOpened()
                connection.opened()
                return .accept
            case .deny(let status, let reason):
                bridge.metrics.denied.increment()
                connection.disconnected(code: CloseCode.abnormal)
                bridge.close(connection)
                return .deny(status: status, reason: reason)
            case .timedOut:
                bridge.metrics.unavailable.increment()
                connection.disconnected(code: CloseCode.abnormal)
                bridge.close(connection)
                return .deny(status: 504, reason: "the Django worker did not accept within \(bridge.configuration.connectTimeout)")
            case .retry:
                bridge.close(connection)
            }
        }
        bridge.metrics.unavailable.increment()
        return .deny(status: 503, reason: "no Django worker is available; connect again")
    }

    private enum Outcome {
        case accept
        case deny(status: Int, reason: String)
        case timedOut
        case retry
    }

    /// Applies the worker's actions until the application accepted or refused.
    private func decision(of connection: BridgedConnection, bridge: DjangoBridge) async -> Outcome {
        let timer = bridge.after(bridge.configuration.connectTimeout) { connection.timeOut() }
        defer { timer.cancel() }
        while true {
            switch await connection.next() {
            case .actions(let actions):
                for (index, (seq, action)) in actions.enumerated() {
                    switch action {
                    case .accept(let subprotocol, let headers, let forward):
                        context.forwardRules = forward.isEmpty ? nil : forward.mapValues { bridge.rule(fields: $0) }
                        var answer = headers.filter { $0.0.lowercased() != "sec-websocket-protocol" }.map { (name: $0.0, value: $0.1) }
                        if let subprotocol { answer.append((name: "Sec-WebSocket-Protocol", value: subprotocol)) }
                        context.handshakeHeaders = answer
                        // What came after the accept waits for the connection's mailbox.
                        connection.requeue(Array(actions[(index + 1)...]))
                        return .accept
                    case .close:
                        return .deny(status: 403, reason: "the application refused the connection")
                    case .end(let error):
                        connection.applicationEnded()
                        return error == nil
                            ? .deny(status: 403, reason: "the application ended without accepting the connection")
                            : .deny(status: 500, reason: "the application failed; see the Django worker's log")
                    case .reject:
                        return .retry
                    case .groupAdd, .groupDiscard, .groupSend:
                        await apply(seq, action, connection)
                    case .sendText, .sendBytes:
                        // The worker refuses sends before accept (the application sees the error).
                        break
                    }
                }
            case .lost:
                return .retry
            case .timedOut:
                return .timedOut
            case .progress:
                continue
            }
        }
    }

    func receive(text: String) async throws {
        await forward(.receiveText(text))
    }

    func receive(binary: [UInt8]) async throws {
        await forward(.receiveBytes(binary))
    }

    func handle(message: Message) async throws {
        guard let connection else { return }
        if message.type == BridgeWire.wake {
            for (seq, action) in connection.takeReady() { await apply(seq, action, connection) }
            return
        }
        await forward(.layer(message))
    }

    func disconnect(code: UInt16) async {
        guard let connection, let bridge else { return }
        connection.disconnected(code: code)
        bridge.close(connection)
        bridge.metrics.connectionClosed()
        self.connection = nil
    }

    /// Passes an event to the worker without waiting: when the worker's window is full it waits in the
    /// connection, in order, and the client is not read until the worker caught up. The worker's actions are
    /// applied when they come (a wake-up through the mailbox), so a worker waiting for a `done` never waits
    /// behind a full window, and frames of forward rules never wait behind a slow worker.
    private func forward(_ event: BridgeWire.Event) async {
        guard let connection else { return }
        switch connection.submit(event) {
        case .sent, .waiting, .dropped:
            // Dropped: closing with 1012; what the client sent last goes nowhere, like any message to a closing socket.
            break
        case .overflow:
            bridge?.metrics.slowClosed.increment()
            context.close(code: CloseCode.slowClient, reason: "the Django worker is too far behind this connection")
        }
    }

    /// One action of an accepted connection, in the connection's task.
    private func apply(_ seq: Int64, _ action: BridgeWire.Action, _ connection: BridgedConnection) async {
        switch action {
        case .sendText(let text):
            context.send(text: text)
        case .sendBytes(let bytes):
            context.send(binary: bytes)
        case .close(let code, let reason):
            context.close(code: code, reason: Self.closeReason(reason))
        case .end(let error):
            // The application returned (1000) or raised (1011, as Daphne closes it).
            connection.applicationEnded()
            if error != nil {
                context.close(code: CloseCode.internalError, reason: "internal error")
            } else {
                context.close(code: CloseCode.normal)
            }
        case .groupAdd(let group, let presence):
            var failure: String?
            do throws(ChannelLayerError) {
                if let user = presence {
                    try await context.groupAdd(group, presence: PresenceInfo(user: user))
                } else {
                    try await context.groupAdd(group)
                }
            } catch {
                failure = error.message
            }
            connection.sendDone(action: seq, error: failure)
        case .groupDiscard(let group):
            var failure: String?
            do throws(ChannelLayerError) {
                try await context.groupDiscard(group)
            } catch {
                failure = error.message
            }
            connection.sendDone(action: seq, error: failure)
        case .groupSend(let group, let message):
            var failure: String?
            do throws(ChannelLayerError) {
                try await context.groupSend(message, to: group)
            } catch {
                failure = error.message
            }
            connection.sendDone(action: seq, error: failure)
        case .accept, .reject:
            // Only meaningful while connecting.
            break
        }
    }

    /// A close frame's reason holds at most 123 bytes of UTF-8.
    static func closeReason(_ reason: String) -> String {
        var cut = Substring(reason)
        while cut.utf8.count > 123 { cut.removeLast() }
        return String(cut)
    }
}
