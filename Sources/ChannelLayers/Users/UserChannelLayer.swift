/// A layer that counts each user's connections across every node that shares it, so that a user can be
/// limited cluster-wide and its first and last connection are known (webhooks' `user_online`/`user_offline`).
public protocol UserChannelLayer: ChannelLayer {
    /// Counts a new connection of `user` (a token's `sub`). With `limit` > 0 it is refused when the user
    /// already has `limit` connections on all nodes together; a refused connection is not counted.
    func userConnected(_ user: String, limit: Int) async throws(ChannelLayerError) -> UserAdmission
    /// A connection counted by ``userConnected(_:limit:)`` ended.
    func userDisconnected(_ user: String)
}

/// What ``UserChannelLayer/userConnected(_:limit:)`` decided.
public enum UserAdmission: Sendable, Hashable {
    /// Counted; the user now has this many connections.
    case admitted(connections: Int)
    /// The user already has this many connections, the limit.
    case refused(connections: Int)
}

/// The group every connection of a user is in: `user.<sub>`.
public enum UserGroup {
    /// The prefix of users' groups.
    public static let prefix = "user."

    /// `user.<sub>`, or `nil` when that is not a valid group name (a `sub` with characters Channels does not
    /// allow in group names, or too long): such a user's connections are in no user group.
    public static func name(for user: String) -> String? {
        let name = prefix + user
        return (try? LayerValidation.group(name)) == nil ? nil : name
    }
}

/// The cluster's webhook events, kept in the layer's backend until one node has delivered them.
public protocol WebhookEventQueue: Sendable {
    /// Keeps the nodes recording events for a while (`ttl`); a sender calls it well within that.
    func recordEvents(for ttl: Duration) async throws(ChannelLayerError)
    /// Takes or keeps the right to send for `lease`; `false` while another node holds it.
    func lead(for lease: Duration) async throws(ChannelLayerError) -> Bool
    /// The oldest events not yet delivered, in the order they happened.
    func oldest(_ limit: Int) async throws(ChannelLayerError) -> [WebhookEvent]
    /// Forgets delivered events.
    func delivered(_ events: [WebhookEvent]) async throws(ChannelLayerError)
    /// Events not recorded because the queue was full (since the backend started counting).
    func dropped() async throws(ChannelLayerError) -> Int
}

/// One webhook event: its JSON object (`{"name": ..., ...}`) and its id in the queue.
public struct WebhookEvent: Sendable, Hashable {
    public var id: String
    public var json: String

    public init(id: String, json: String) {
        self.id = id
        self.json = json
    }
}

/// A layer whose nodes record webhook events.
public protocol WebhookChannelLayer: ChannelLayer {
    /// The queue, or `nil` when this layer records none (no shared state).
    var webhookEvents: (any WebhookEventQueue)? { get }
}
