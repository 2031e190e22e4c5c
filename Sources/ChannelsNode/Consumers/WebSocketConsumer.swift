import ChannelLayers
import ChannelsProtocol

/// A WebSocket consumer, modelled on Django Channels' `AsyncWebsocketConsumer`.
///
/// The node creates one instance per connection and calls it from one task, in order: ``connect()``, then
/// ``receive(text:)``, ``receive(binary:)`` and layer messages as they come, then ``disconnect(code:)``.
/// Events after `connect` run on the connection's event loop: await, never block (a blocking call holds every
/// connection of that loop); CPU-heavy work belongs in a `Task.detached` or NIO's thread pool.
/// Layer messages go to the handler named after their `type` (`chat.message` to `chat_message`), looked
/// up in ``forwardRules`` (no code: the node forwards fields to the client) and ``messageHandlers``:
///
/// ```swift
/// final class EchoConsumer: WebSocketConsumer {
///     static var messageHandlers: [String: Handler] { ["echo_message": EchoConsumer.echo] }
///     let context: ConsumerContext
///     init(context: ConsumerContext) { self.context = context }
///     func receive(text: String) async throws {
///         try await context.groupSend(["type": "echo.message", "text": .string(text)], to: "echo")
///     }
///     func echo(_ message: Message) async throws { try await context.send(text: message["text"]?.string ?? "") }
/// }
/// ```
///
/// A consumer type is used from the event loop its connection runs on, so its metatype is `Sendable`
/// (`SendableMetatype`: no conformance isolated to an actor).
public protocol WebSocketConsumer: AnyObject, SendableMetatype {
    /// A handler for a layer message.
    typealias Handler = (Self) -> (Message) async throws -> Void

    /// Layer message handlers by name (`chat_message`); read once per connection.
    static var messageHandlers: [String: Handler] { get }

    /// Handlers that only forward fields of the event to the client, by name; read once per route.
    /// They run without waking a task. A name in both tables uses the rule.
    static var forwardRules: [String: ForwardRule] { get }

    /// Whether ``receive(binary:)`` is implemented; when `false` (the default) a binary frame is answered
    /// with an `invalid_frame` error frame and the connection stays.
    static var acceptsBinary: Bool { get }

    /// Creates the consumer for a connection.
    init(context: ConsumerContext)

    /// Called once the handshake passed the middleware: accept, or reject with a close code.
    func connect() async throws -> ConnectDecision

    /// A text message from the client.
    func receive(text: String) async throws

    /// A binary message from the client.
    func receive(binary: [UInt8]) async throws

    /// The connection ended, with the close code that ended it. Group memberships made through the
    /// context are left by the node afterwards.
    func disconnect(code: UInt16) async
}

/// What ``WebSocketConsumer/connect()`` decides.
public enum ConnectDecision: Sendable, Equatable {
    case accept
    /// Refuse the connection: the node accepts the upgrade and closes at once with `code` and `reason`
    /// (browsers cannot see an HTTP status for a refused WebSocket, but they see these).
    case reject(code: UInt16, reason: String? = nil)
    /// Refuse the handshake itself with an HTTP status and a short reason: the WebSocket never opens. Daphne
    /// answers a Django consumer that closes before accepting this way (403), and one that fails (500).
    case deny(status: Int, reason: String)
}

extension WebSocketConsumer {
    public static var messageHandlers: [String: Handler] { [:] }
    public static var forwardRules: [String: ForwardRule] { [:] }
    public static var acceptsBinary: Bool { false }
    public func connect() async throws -> ConnectDecision { .accept }
    public func receive(text: String) async throws {}
    public func receive(binary: [UInt8]) async throws {}
    public func disconnect(code: UInt16) async {}
}
