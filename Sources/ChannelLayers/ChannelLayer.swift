import ChannelsProtocol

/// Django Channels' channel layer API: named channels with bounded queues, and groups of channels.
///
/// - ``send(_:to:)`` to a channel at capacity throws ``ChannelLayerError/Code/channelFull``.
/// - ``groupSend(_:to:)`` never throws it: members at capacity miss the message and the drop is counted.
/// - Invalid channel or group names throw ``ChannelLayerError/Code/invalidName`` with Django's text.
///
/// What a layer can do beyond Django's contract is a protocol of its own, as Centrifuge keeps its broker
/// apart from presence and history: ``InboxChannelLayer`` (pushes a channel's messages to an inbox: what a
/// node's WebSocket connections need), ``PresenceChannelLayer`` (who is in a group), ``HistoryChannelLayer``
/// (offsets, epochs and recent messages for recovering clients). A layer of your own implements this one
/// and ``InboxChannelLayer`` to serve a node, and delivers ``Delivery`` values to ``ChannelInbox``es; the
/// engine's helpers for that (`InboxDispatcher`, `GroupIndex`) are `package` types for now (see the guide).
public protocol ChannelLayer: Sendable {
    /// A new channel name unique to this process, ready to receive (`{prefix}specific.<32 hex>` by default).
    func newChannel(prefix: String) async throws(ChannelLayerError) -> String

    /// Sends a message to a channel.
    func send(_ message: Message, to channel: String) async throws(ChannelLayerError)

    /// Waits for the next message on a channel of this process.
    func receive(from channel: String) async throws(ChannelLayerError) -> Message

    /// Takes up to `limit` messages already queued on a channel, in order, or waits for the next one.
    ///
    /// A receiver that fell behind catches up with one call instead of one per message.
    func receive(from channel: String, upTo limit: Int) async throws(ChannelLayerError) -> [Message]

    /// Adds a channel of this process to a group.
    func groupAdd(_ group: String, channel: String) async throws(ChannelLayerError)

    /// Removes a channel from a group; does nothing when it is not a member.
    func groupDiscard(_ group: String, channel: String) async throws(ChannelLayerError)

    /// Sends a message to every member of a group, wherever it is.
    func groupSend(_ message: Message, to group: String) async throws(ChannelLayerError)

    /// Forgets a channel of this process: its queue, its waiters and its group memberships.
    func deleteChannel(_ channel: String) async

    /// Empties the layer: channels, groups, queues.
    func flush() async throws(ChannelLayerError)

    /// Counters since the layer was created.
    var statistics: ChannelLayerStatistics { get }
}

/// A layer that pushes a channel's messages to an inbox instead of queueing them: what a node's WebSocket
/// connections are made of.
public protocol InboxChannelLayer: ChannelLayer {
    /// A new channel name unique to this process whose messages, and those of the groups it joins, are
    /// pushed to `inbox` instead of queued: ``ChannelLayer/receive(from:)`` is not used for it.
    ///
    /// Group messages reach every local inbox of a group with one hop per event loop. Nothing is dropped
    /// on the way: when the inboxes' event loops fall behind, the layer stops taking new messages (the
    /// Redis layer stops reading its subscription, the in-memory `groupSend` waits) until they catch up.
    func newChannel(prefix: String, inbox: any ChannelInbox) async throws(ChannelLayerError) -> String
}

/// A layer that knows who is in a group, on every node, and tells members when others join and leave.
public protocol PresenceChannelLayer: ChannelLayer {
    /// Adds a channel of this process to a group with presence: the group's presence lists it with `presence`,
    /// and the members get a ``PresenceEvent`` when it joins and when it leaves (where the layer can tell them).
    func groupAdd(_ group: String, channel: String, presence: PresenceInfo) async throws(ChannelLayerError)

    /// The members of a group that joined with presence, on every node, oldest first.
    func presence(of group: String) async throws(ChannelLayerError) -> [PresenceMember]
}

/// A layer whose groups (some of them) keep a history: offsets, epochs and recent messages, so clients can
/// recover what they missed.
public protocol HistoryChannelLayer: ChannelLayer {
    /// Whether `group` keeps a history.
    func keepsHistory(_ group: String) -> Bool

    /// ``ChannelLayer/groupSend(_:to:)``, telling where the message stands in the group's history:
    /// publishers outside the node (the HTTP API) hand the offset to their clients. `nil` when the group
    /// keeps no history.
    func groupSendWithPosition(_ message: Message, to group: String) async throws(ChannelLayerError) -> HistoryPosition?

    /// Reads a history group: its newest position, the oldest offset it keeps, and at most `limit` of its
    /// messages, oldest first: the first ones after `offset`, or with `offset` `nil` the newest ones.
    /// `nil` when the group keeps no history. Every read is bounded by `limit`, so a reader pages through
    /// a long history instead of holding it whole.
    func history(of group: String, after offset: Int64?, limit: Int) async throws(ChannelLayerError) -> GroupHistory?
}

extension ChannelLayer {
    /// One message at a time, for layers without a queue to take from.
    public func receive(from channel: String, upTo limit: Int) async throws(ChannelLayerError) -> [Message] {
        [try await receive(from: channel)]
    }

    /// A new channel name with the default `specific.` prefix.
    public func newChannel() async throws(ChannelLayerError) -> String {
        try await newChannel(prefix: "specific.")
    }

    /// Whether `group` keeps a history in this layer (`false` for layers without history).
    public func keepsHistory(of group: String) -> Bool {
        (self as? any HistoryChannelLayer)?.keepsHistory(group) ?? false
    }

    /// ``groupSend(_:to:)`` on any layer, with the message's position when the layer keeps the group's history.
    public func groupSendReportingPosition(_ message: Message, to group: String) async throws(ChannelLayerError) -> HistoryPosition? {
        if let history = self as? any HistoryChannelLayer { return try await history.groupSendWithPosition(message, to: group) }
        try await groupSend(message, to: group)
        return nil
    }
}

/// What a layer has done since it was created.
public struct ChannelLayerStatistics: Sendable, Hashable {
    /// Messages accepted by `send`.
    public var messagesSent = 0
    /// Group sends (one each, whatever the group size).
    public var groupSends = 0
    /// Messages put into a local channel's queue.
    public var deliveries = 0
    /// Messages a full queue could not take (from group sends, or from Redis for a direct channel).
    public var dropped = 0
    /// Messages for this process that senders could not write to its full Redis queue, as they recorded
    /// it (the core layer: a Swift sender's `groupSend`); the members of their groups were told.
    public var missed = 0
    /// Messages that expired in a queue before anyone received them.
    public var expired = 0
    /// Payloads from Redis that could not be decoded.
    public var undecodable = 0
    /// Times the connection that brings this process its messages (the Redis layers' subscription or queue
    /// reader) was lost.
    public var connectionLosses = 0
    /// Times it was made again after such a loss, with every subscription restored.
    public var reconnections = 0
    /// Channels with a queue in this process.
    public var localChannels = 0
    /// Groups with at least one member in this process.
    public var localGroups = 0
    /// Bytes this process appended to group histories.
    public var historyBytesWritten = 0
    /// Bytes of history this process read back (recovering clients, the API).
    public var historyBytesRead = 0
    /// Messages that carried an offset and epoch the group's history did not assign: delivered without them.
    public var untrustedOffsets = 0

    public init() {}
}

extension ChannelLayerStatistics {
    @available(*, deprecated, renamed: "connectionLosses")
    public var redisConnectionLosses: Int { connectionLosses }
    @available(*, deprecated, renamed: "reconnections")
    public var redisResubscriptions: Int { reconnections }
}
