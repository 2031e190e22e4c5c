import ChannelsProtocol

/// Maps WebSocket paths to consumer types, with Django-style patterns: `/ws/chat/<room>/`.
///
/// A `<name>` segment matches one non-empty path segment and lands in ``Scope/parameters``.
/// A trailing slash in the pattern is optional in the request, so `/ws/chat/lobby` matches too.
public struct ConsumerRouter: Sendable {
    enum Segment: Sendable, Hashable {
        case literal(String)
        case parameter(String)
    }

    struct Route: Sendable {
        let pattern: String
        let segments: [Segment]
        let makeDriver: @Sendable (ConsumerContext) -> ConsumerDriver
        /// The consumer type's forwarding rules, made once so that their frames are shared per message.
        let rules: [String: ForwardRule]
        /// Names with handler code.
        let handlers: Set<String>
        /// Whether the consumer takes binary frames.
        let acceptsBinary: Bool
        /// Whether every layer message reaches the consumer (``AnyMessageConsumer``), not only named ones.
        let handlesEveryMessage: Bool
    }

    private(set) var routes: [Route] = []
    /// Routes by path prefix, matched before ``routes``.
    private(set) var prefixRoutes: [(prefix: String, route: Route)] = []

    public init() {}

    /// Routes `pattern` to consumers of type `consumer`.
    public mutating func add<C: WebSocketConsumer & SendableMetatype>(_ pattern: String, _ consumer: C.Type) {
        let segments = pattern.split(separator: "/").map { part -> Segment in
            if part.hasPrefix("<"), part.hasSuffix(">") {
                // Django's `<str:room>` converter syntax is accepted as `<room>`.
                let name = part.dropFirst().dropLast().split(separator: ":").last.map(String.init) ?? ""
                return .parameter(name)
            }
            return .literal(String(part))
        }
        routes.append(Self.route(pattern, segments: segments, C.self) { ConsumerDriver.make(C(context: $0)) })
    }

    /// Routes every path that starts with `prefix` (`/ws/`) to consumers that `make` creates, ahead of every
    /// pattern route: a bridge that serves a whole subtree (the Django bridge, `--django-path`).
    public mutating func add<C: WebSocketConsumer & SendableMetatype>(
        prefix: String, _ consumer: C.Type, make: @escaping @Sendable (ConsumerContext) -> C
    ) {
        prefixRoutes.append((prefix, Self.route(prefix + "*", segments: [], C.self) { ConsumerDriver.make(make($0)) }))
    }

    private static func route<C: WebSocketConsumer & SendableMetatype>(
        _ pattern: String, segments: [Segment], _ type: C.Type, makeDriver: @escaping @Sendable (ConsumerContext) -> ConsumerDriver
    ) -> Route {
        Route(
            pattern: pattern, segments: segments, makeDriver: makeDriver, rules: C.forwardRules, handlers: Set(C.messageHandlers.keys),
            acceptsBinary: C.acceptsBinary, handlesEveryMessage: C.self is any AnyMessageConsumer.Type
        )
    }

    /// The route for `path` and its parameters, or `nil`.
    func match(_ path: Substring) -> (Route, [String: String])? {
        if let (_, route) = prefixRoutes.first(where: { path.hasPrefix($0.prefix) }) { return (route, [:]) }
        let parts = path.split(separator: "/")
        for route in routes where route.segments.count == parts.count {
            var parameters: [String: String] = [:]
            var matched = true
            for (segment, part) in zip(route.segments, parts) {
                switch segment {
                case .literal(let literal):
                    if literal != part { matched = false }
                case .parameter(let name):
                    parameters[name] = Scope.percentDecode(part)
                }
                if !matched { break }
            }
            if matched { return (route, parameters) }
        }
        return nil
    }
}

/// A consumer behind closures, so the node can drive any consumer type the same way.
///
/// Unchecked Sendable: the connection runs at most one task at a time with consumer code (its mailbox's
/// `running` flag, kept on its event loop), so the consumer is never used by two tasks at once.
struct ConsumerDriver: @unchecked Sendable {
    let connect: () async throws -> ConnectDecision
    let receiveText: (String) async throws -> Void
    let receiveBinary: ([UInt8]) async throws -> Void
    /// Dispatches a layer message to its handler; `false` when the consumer has none for its type.
    let handle: (Message) async throws -> Bool
    let disconnect: (UInt16) async -> Void

    static func make<C: WebSocketConsumer>(_ consumer: C) -> ConsumerDriver {
        let handlers = C.messageHandlers
        let takesAny = consumer as? any AnyMessageConsumer
        return ConsumerDriver(
            connect: { try await consumer.connect() },
            receiveText: { try await consumer.receive(text: $0) },
            receiveBinary: { try await consumer.receive(binary: $0) },
            handle: { message in
                if let name = try? message.handlerName(), let handler = handlers[name] {
                    try await handler(consumer)(message)
                    return true
                }
                guard let takesAny else { return false }
                try await takesAny.handle(message: message)
                return true
            },
            disconnect: { await consumer.disconnect(code: $0) }
        )
    }
}
