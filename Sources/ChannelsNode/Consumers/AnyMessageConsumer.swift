import ChannelsProtocol

/// A consumer that takes every layer message no forward rule carries, whatever its type: its handlers live
/// elsewhere (the Django bridge hands them to the Python worker running the connection's consumer).
///
/// A name in ``WebSocketConsumer/messageHandlers`` still goes to that handler; everything else comes here, in
/// order, one at a time, like any handler.
public protocol AnyMessageConsumer: WebSocketConsumer {
    /// A layer message for this connection that neither a forward rule nor a named handler took.
    func handle(message: Message) async throws
}
