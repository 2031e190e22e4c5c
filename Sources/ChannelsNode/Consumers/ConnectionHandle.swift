import ChannelLayers
import ChannelsProtocol
import NIOCore

/// What code outside a consumer's task may do with its connection, from any thread: answers that arrive on
/// their own (a bridge's replies, a timer) without waiting for the consumer's next event.
public struct ConnectionHandle: Sendable {
    private let connection: ClientConnection

    init(connection: ClientConnection) {
        self.connection = connection
    }

    /// Closes the connection after the frames already sent.
    public func close(code: UInt16, reason: String) {
        connection.requestClose(code: code, reason: reason)
    }

    /// Stops reading the client's frames until ``releaseReading()``: the client is slowed by TCP, nothing it
    /// sent is lost, and layer messages keep flowing to it. For consumers that pass frames on to a process of
    /// their own without waiting, when that process falls behind.
    public func holdReading() {
        connection.holdReading()
    }

    /// Reads the client again after ``holdReading()``.
    public func releaseReading() {
        connection.releaseReading()
    }

    /// Hands `message` to the connection's own mailbox, as if the layer had delivered it to its channel: the
    /// consumer's handler for it runs in order with its other events, one at a time.
    public func deliverToSelf(_ message: Message) {
        connection.eventLoop.execute { [connection] in
            if connection.receive(Delivery(message)) { connection.endOfBatch() }
        }
    }
}
