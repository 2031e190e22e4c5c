import ChannelsProtocol

/// Who a channel is, for the presence of the groups it joins: the token's `sub` and a small `info` claim.
public struct PresenceInfo: Sendable, Hashable {
    public var user: String?
    public var info: MessageValue?

    public init(user: String? = nil, info: MessageValue? = nil) {
        self.user = user
        self.info = info
    }
}

/// A member of a group's presence.
public struct PresenceMember: Sendable, Hashable {
    public var channel: String
    /// The node that holds it (the Redis layer's node id), if known.
    public var node: String?
    public var user: String?
    public var info: MessageValue?
    /// Unix seconds.
    public var joinedAt: Double

    public init(channel: String, node: String?, user: String?, info: MessageValue?, joinedAt: Double) {
        self.channel = channel
        self.node = node
        self.user = user
        self.info = info
        self.joinedAt = joinedAt
    }

    /// The member as a JSON-ready map: `channel`, `node`, `user`, `info`, `joined_at`.
    public var fields: [(String, MessageValue)] {
        [
            ("channel", .string(channel)), ("node", node.map { .string($0) } ?? .null), ("user", user.map { .string($0) } ?? .null),
            ("info", info ?? .null), ("joined_at", .double(joinedAt)),
        ]
    }
}

/// The layer message a group's members get when a member with presence joins or leaves
/// (`{"type": "channels.presence", "event": "join" | "leave", "channel", "user", "info", "node"}`).
public enum PresenceEvent {
    public static let type = "channels.presence"
    /// The handler name its type maps to.
    public static let handlerName = "channels_presence"

    package static func message(_ event: String, channel: String, presence: PresenceInfo, node: String?, at: Double) -> Message {
        var message: Message = ["type": .string(type), "event": .string(event), "channel": .string(channel)]
        message["user"] = presence.user.map { .string($0) } ?? .null
        message["info"] = presence.info ?? .null
        message["node"] = node.map { .string($0) } ?? .null
        message["at"] = .double(at)
        return message
    }
}
