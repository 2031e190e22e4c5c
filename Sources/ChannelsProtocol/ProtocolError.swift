/// Bad input for the protocol layer: an undecodable payload, an invalid name, a malformed frame.
public struct ProtocolError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The kind of problem.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private let name: String
        private init(_ name: String) { self.name = name }

        /// A msgpack payload that cannot be decoded or exceeds the limits.
        public static let invalidMessagePack = Code("invalidMessagePack")
        /// A message without the shape the layer needs (a map with string keys and a `type`).
        public static let invalidMessage = Code("invalidMessage")
        /// A channel or group name that breaks Django Channels' rules.
        public static let invalidName = Code("invalidName")
        /// Text that is not valid JSON, or exceeds the limits.
        public static let invalidJSON = Code("invalidJSON")
        /// A value JSON cannot carry (bytes, NaN, infinity).
        public static let unrepresentable = Code("unrepresentable")

        public var description: String { name }
    }

    public let code: Code
    /// What was wrong, for the log or the client.
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}
