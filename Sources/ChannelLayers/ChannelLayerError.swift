import ChannelsProtocol

/// Why a channel layer call failed.
public struct ChannelLayerError: Error, Sendable, Hashable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private let name: String
        private init(_ name: String) { self.name = name }

        /// `send` found the channel at capacity (Django's `ChannelFull`).
        public static let channelFull = Code("channelFull")
        /// A channel or group name breaks the rules; the message is Django's.
        public static let invalidName = Code("invalidName")
        /// The message has no `type` or cannot be encoded or decoded.
        public static let invalidMessage = Code("invalidMessage")
        /// The layer's backend failed (Redis for the Redis layers): unreachable, refused the credentials,
        /// timed out. ``ChannelLayerError/mayHaveTakenEffect`` says whether the call may have taken effect.
        public static let unavailable = Code("unavailable")
        /// The name this code had while only Redis layers existed.
        @available(*, deprecated, renamed: "unavailable")
        public static var redis: Code { unavailable }
        /// `groupAdd` on a channel this process does not hold.
        public static let notLocal = Code("notLocal")
        /// The receiving task was cancelled.
        public static let cancelled = Code("cancelled")
        /// The layer was shut down.
        public static let closed = Code("closed")

        public var description: String { name }
    }

    public let code: Code
    public let message: String
    /// The error behind a ``Code/unavailable`` failure (a `RedisError` for the Redis layers).
    public let underlying: (any Error & Sendable)?
    /// Whether the call may have taken effect although it failed: a message handed to Redis whose
    /// confirmation never came may have been delivered. `false` when it certainly was not (Redis was
    /// unreachable, the name was invalid, the channel full): sending it again cannot duplicate it.
    public var mayHaveTakenEffect: Bool

    public init(_ code: Code, _ message: String, underlying: (any Error & Sendable)? = nil, mayHaveTakenEffect: Bool = false) {
        self.code = code
        self.message = message
        self.underlying = underlying
        self.mayHaveTakenEffect = mayHaveTakenEffect
    }

    public var description: String { message }

    public static func == (lhs: ChannelLayerError, rhs: ChannelLayerError) -> Bool {
        lhs.code == rhs.code && lhs.message == rhs.message
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(code)
        hasher.combine(message)
    }

    package static func channelFull(_ channel: String) -> ChannelLayerError {
        ChannelLayerError(.channelFull, "ChannelFull: channel \(channel) holds its capacity of messages; the receiver is not keeping up")
    }

    package init(_ error: ProtocolError) {
        self.init(error.code == .invalidName ? .invalidName : .invalidMessage, error.message)
    }
}
