import OrderedCollections

/// A channel layer message: string keys in order, with a `type` that names its handler.
///
/// ```swift
/// let message: Message = ["type": "chat.message", "message": "hi"]
/// message.type          // "chat.message"
/// message["message"]    // .string("hi")
/// ```
public struct Message: Sendable, Hashable, ExpressibleByDictionaryLiteral, CustomStringConvertible {
    /// The fields, in the order they were set (the order msgpack writes them).
    public var fields: OrderedDictionary<String, MessageValue>

    public init(_ fields: OrderedDictionary<String, MessageValue> = [:]) {
        self.fields = fields
    }

    public init(dictionaryLiteral elements: (String, MessageValue)...) {
        self.fields = OrderedDictionary(uniqueKeysWithValues: elements)
    }

    /// The `type` field, if it is a string.
    public var type: String? { fields["type"]?.string }

    public subscript(key: String) -> MessageValue? {
        get { fields[key] }
        set { fields[key] = newValue }
    }

    /// The consumer method that handles this message: `chat.message` becomes `chat_message`.
    /// - Throws: ``ProtocolError`` when there is no `type`, or it maps to a name with a leading underscore.
    public func handlerName() throws(ProtocolError) -> String {
        guard let type else {
            throw ProtocolError(.invalidMessage, "Incoming message has no 'type' attribute")
        }
        return try Message.handlerName(forType: type)
    }

    /// Django Channels' mapping from a message type to a handler name (dots become underscores).
    public static func handlerName(forType type: String) throws(ProtocolError) -> String {
        let name = type.replacingDots()
        if name.hasPrefix("_") {
            throw ProtocolError(.invalidMessage, "Malformed type in message (leading underscore)")
        }
        return name
    }

    public var description: String { "\(MessageValue.map(fields))" }
}

extension String {
    fileprivate func replacingDots() -> String {
        String(unicodeScalars.map { $0 == "." ? "_" : Character($0) })
    }
}
