import OrderedCollections

/// The JSON text frames a node exchanges with browsers, defined once for the node, tests and tools.
///
/// - A client sends text frames that each hold one JSON object (UTF-8, at most ``Limits/maxBytes``).
///   What the object means is the consumer's business: the chat consumer reads `{"message": "..."}`.
/// - A node sends text frames that each hold one JSON object, e.g. `{"message": "hi"}`.
/// - When a node refuses a frame but keeps the connection, it answers with an error frame:
///   `{"type": "error", "error": "<code>", "detail": "<text>"}` (see ``ErrorCode``).
public enum ClientFrame {
    /// Why a frame was refused; the `error` field of an error frame.
    public struct ErrorCode: RawRepresentable, Hashable, Sendable {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }

        /// The text is not JSON.
        public static let invalidJSON = ErrorCode(rawValue: "invalid_json")
        /// The JSON is not an object, or lacks a field the consumer needs.
        public static let invalidFrame = ErrorCode(rawValue: "invalid_frame")
        /// The connection may not do that (join a group outside its token's list, for example).
        public static let forbidden = ErrorCode(rawValue: "forbidden")
        /// The node could not pass the message on (its channel layer lost Redis); it was not delivered, so
        /// sending it again cannot duplicate it. `frame` names it.
        public static let unavailable = ErrorCode(rawValue: "unavailable")
        /// The node handed the message to its channel layer but no confirmation came in time (a network
        /// partition, a stalled Redis): it may or may not have been delivered, and it will not be delivered
        /// later. `frame` names it.
        public static let unconfirmed = ErrorCode(rawValue: "unconfirmed")
        /// Messages for this connection were lost on the way (the node lost its Redis subscription):
        /// the app should reload its state, or recover from history.
        public static let messagesLost = ErrorCode(rawValue: "messages_lost")
    }

    /// Bounds for inbound frames.
    public struct Limits: Sendable, Hashable {
        public var maxBytes: Int
        public var maxDepth: Int
        public init(maxBytes: Int = 64 * 1024, maxDepth: Int = 32) {
            self.maxBytes = maxBytes
            self.maxDepth = maxDepth
        }
    }

    /// Decodes an inbound text frame into its JSON object.
    /// - Throws: ``ProtocolError/Code/invalidJSON`` for text that is not JSON or is too large or deep,
    ///   ``ProtocolError/Code/invalidMessage`` when the JSON is not an object.
    public static func decode(_ text: String, limits: Limits = Limits()) throws(ProtocolError) -> OrderedDictionary<String, MessageValue> {
        let value = try JSON.parse(text, limits: JSON.Limits(maxSize: limits.maxBytes, maxDepth: limits.maxDepth))
        guard case .map(let object) = value else {
            throw ProtocolError(.invalidMessage, "a frame must be a JSON object, like {\"message\": \"hi\"}")
        }
        return object
    }

    /// Encodes an outbound frame.
    public static func encode(_ object: OrderedDictionary<String, MessageValue>) throws(ProtocolError) -> String {
        try JSON.serialize(.map(object))
    }

    /// An error frame; `frame`, when the error is about a client frame, is its number on the connection
    /// (the first frame the client sent is 1), so a client can tell which of its messages it means.
    public static func error(_ code: ErrorCode, detail: String, frame: Int? = nil) -> String {
        var object: OrderedDictionary<String, MessageValue> = ["type": "error", "error": .string(code.rawValue), "detail": .string(detail)]
        if let frame { object["frame"] = .int(Int64(frame)) }
        // Only strings and an integer inside: serialisation cannot fail.
        return (try? JSON.serialize(.map(object))) ?? "{}"
    }
}
