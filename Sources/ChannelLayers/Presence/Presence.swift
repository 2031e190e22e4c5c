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

extension PresenceInfo {
    /// The largest `info`, in bytes of JSON, a member may carry. With a `sub` within ``maxUserBytes``, the
    /// member's registry value stays within what other nodes read back (8 KiB, 8 levels of nesting).
    public static let maxInfoBytes = 4096
    /// The deepest nesting of objects and arrays an `info` may have.
    public static let maxInfoDepth = 6
    /// The longest `sub`, in bytes of UTF-8.
    public static let maxUserBytes = 512

    /// Why this user and info could not be listed in other nodes' presence, in words for a refusal; `nil`
    /// when they can.
    public static func problem(user: String?, info: MessageValue?) -> String? {
        if let user, user.utf8.count > maxUserBytes {
            return "the sub claim is \(user.utf8.count) bytes; at most \(maxUserBytes) bytes"
        }
        guard let info else { return nil }
        let depth = nesting(of: info)
        if depth > maxInfoDepth {
            return "the info claim nests \(depth) levels; at most \(maxInfoDepth) levels"
        }
        guard let json = try? JSON.serialize(info) else { return "the info claim cannot be written as JSON" }
        if json.utf8.count > maxInfoBytes {
            return "the info claim is \(json.utf8.count) bytes as JSON; at most \(maxInfoBytes) bytes"
        }
        return nil
    }

    /// Objects and arrays inside one another: 0 for a scalar, 1 for `{}` or `[1]`.
    static func nesting(of value: MessageValue) -> Int {
        switch value {
        case .map(let object): 1 + (object.map { nesting(of: $0.value) }.max() ?? 0)
        case .array(let elements): 1 + (elements.map(nesting(of:)).max() ?? 0)
        default: 0
        }
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
