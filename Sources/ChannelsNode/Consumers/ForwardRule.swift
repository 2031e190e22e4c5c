import ChannelLayers
import ChannelsProtocol
import NIOCore
import OrderedCollections

/// A layer message handler that only forwards fields of the event to the client as a JSON text frame.
///
/// Declared instead of handler code (``WebSocketConsumer/forwardRules``), it runs on the connection's
/// event loop without waking a task, and its frame is encoded once per message for every member of a
/// group. Order is kept: while the consumer's own code is busy with earlier messages, a forwarded
/// message waits its turn.
///
/// ```swift
/// static var forwardRules: [String: ForwardRule] { ["chat_message": ForwardRule(fields: ["message"], missing: "")] }
/// ```
public final class ForwardRule: Sendable {
    /// The event's fields the frame carries, in this order.
    public let fields: [String]
    /// What a field the event lacks becomes; `nil` leaves it out of the frame.
    public let missing: MessageValue?
    /// The key of this rule's compressed frame in a delivery (permessage-deflate): made once per message too.
    let deflated = OutputShape()
    /// The key of this rule's server-sent event in a delivery: made once per message too.
    let eventStream = OutputShape()

    /// Identifies another output form of a rule's frame in ``Delivery/prepared(for:_:)``.
    final class OutputShape: Sendable {}

    public init(fields: [String], missing: MessageValue? = nil) {
        self.fields = fields
        self.missing = missing
    }

    /// The frame's JSON object for a message.
    public func object(for message: Message) -> OrderedDictionary<String, MessageValue> {
        var object: OrderedDictionary<String, MessageValue> = [:]
        object.reserveCapacity(fields.count)
        for field in fields {
            if let value = message[field] ?? missing { object[field] = value }
        }
        return object
    }

    /// The WebSocket frame for a delivery, or `nil` when JSON cannot carry a value in it (bytes, NaN,
    /// infinity). A message of a history group also carries its `offset` and `epoch`, for recovery.
    func frame(for delivery: Delivery) -> ByteBuffer? {
        var object = object(for: delivery.message)
        if let position = delivery.position {
            object["offset"] = .int(position.offset)
            object["epoch"] = .string(position.epoch)
        }
        guard let text = try? ClientFrame.encode(object) else { return nil }
        return ServerFrame.text(text)
    }
}
