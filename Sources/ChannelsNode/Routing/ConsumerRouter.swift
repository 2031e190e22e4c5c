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

    /// A class: a connection refers to its route (a struct was copied into every connection).
    final class Route: Sendable {
        let pattern: String
        let segments: [Segment]
        let makeDriver: @Sendable (ConsumerContext) -> any ConsumerDriver
        /// The consumer type's forwarding rules, made once so that their frames are shared per message.
        let rules: [String: ForwardRule]
        /// Names with handler code.
        let handlers: Set<String>
        /// Whether the consumer takes binary frames.
        let acceptsBinary: Bool
        /// Whether every layer message reaches the consumer (``AnyMessageConsumer``), not only named ones.
        let handlesEveryMessage: Bool

        init(
            pattern: String, segments: [Segment], makeDriver: @escaping @Sendable (ConsumerContext) -> any ConsumerDriver, rules: [String: ForwardRule],
            handlers: Set<String>, acceptsBinary: Bool, handlesEveryMessage: Bool
        ) {
            self.pattern = pattern
            self.segments = segments
            self.makeDriver = makeDriver
            self.rules = rules
            self.handlers = handlers
            self.acceptsBinary = acceptsBinary
            self.handlesEveryMessage = handlesEveryMessage
        }
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
        routes.append(Self.route(pattern, segments: segments, C.self, makeDriver: TypedConsumerDriver<C>.maker { C(context: $0) }))
    }

    /// Routes every path that starts with `prefix` (`/ws/`) to consumers that `make` creates, ahead of every
    /// pattern route: a bridge that serves a whole subtree (the Django bridge, `--django-path`).
    public mutating func add<C: WebSocketConsumer & SendableMetatype>(
        prefix: String, _ consumer: C.Type, make: @escaping @Sendable (ConsumerContext) -> C
    ) {
        prefixRoutes.append((prefix, Self.route(prefix + "*", segments: [], C.self, makeDriver: TypedConsumerDriver<C>.maker(make))))
    }

    private static func route<C: WebSocketConsumer & SendableMetatype>(
        _ pattern: String, segments: [Segment], _ type: C.Type, makeDriver: @escaping @Sendable (ConsumerContext) -> any ConsumerDriver
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

/// A consumer of any type, driven the same way by the node.
///
/// One object per connection (``TypedConsumerDriver``: the consumer and its type's handler table, shared by
/// the route's connections); five closures had cost every connection five allocations and 80 bytes inline.
protocol ConsumerDriver: AnyObject, Sendable {
    func connect() async throws -> ConnectDecision
    func receiveText(_ text: String) async throws
    func receiveBinary(_ bytes: [UInt8]) async throws
    /// Dispatches a layer message to its handler; `false` when the consumer has none for its type.
    func handle(_ message: Message) async throws -> Bool
    func disconnect(_ code: UInt16) async
}

/// Drives a consumer of type `C`.
///
/// Unchecked Sendable: the connection runs at most one task at a time with consumer code (its mailbox's
/// `running` flag, kept on its event loop), so the consumer is never used by two tasks at once.
final class TypedConsumerDriver<C: WebSocketConsumer>: ConsumerDriver, @unchecked Sendable {
    private let consumer: C
    private let handlers: HandlerTable<C>

    private init(_ consumer: C, handlers: HandlerTable<C>) {
        self.consumer = consumer
        self.handlers = handlers
    }

    /// A driver maker for consumers that `make` creates; the type's handler table is read once, here.
    static func maker(_ make: @escaping @Sendable (ConsumerContext) -> C) -> @Sendable (ConsumerContext) -> any ConsumerDriver {
        let handlers = HandlerTable<C>(handlers: C.messageHandlers)
        return { context in TypedConsumerDriver(make(context), handlers: handlers) }
    }

    func connect() async throws -> ConnectDecision { try await consumer.connect() }
    func receiveText(_ text: String) async throws { try await consumer.receive(text: text) }
    func receiveBinary(_ bytes: [UInt8]) async throws { try await consumer.receive(binary: bytes) }

    func handle(_ message: Message) async throws -> Bool {
        if let name = try? message.handlerName(), let handler = handlers.handlers[name] {
            try await handler(consumer)(message)
            return true
        }
        guard let takesAny = consumer as? any AnyMessageConsumer else { return false }
        try await takesAny.handle(message: message)
        return true
    }

    func disconnect(_ code: UInt16) async { await consumer.disconnect(code: code) }
}

/// A consumer type's handlers, made once per route. Unchecked Sendable: never changed after it is made.
struct HandlerTable<C: WebSocketConsumer>: @unchecked Sendable {
    let handlers: [String: C.Handler]
}
