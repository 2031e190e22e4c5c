import ChannelLayers
import ChannelsProtocol
import NIOWebSocket
import OrderedCollections

/// A consumer's view of its connection: its channel, the layer, the scope, and ways to answer.
///
/// Used from the consumer's own code only, one event at a time, like the consumer itself.
public final class ConsumerContext {
    /// This connection's channel name in the layer.
    public let channelName: String
    /// The channel layer.
    public var layer: any ChannelLayer { connection.layer }
    /// What is known about the connection.
    public var scope: Scope { connection.scope }
    /// The node's limits and policies.
    public var limits: ConnectionLimits { connection.limits }
    /// Groups joined through ``groupAdd(_:)``; the node leaves them when the connection ends.
    public var groups: Set<String> { Set(joinedGroups) }
    private var joinedGroups = SmallSet<String>()
    /// This connection's forward rules by handler name, in place of the consumer type's
    /// ``WebSocketConsumer/forwardRules``; set in ``WebSocketConsumer/connect()`` (read once it accepted).
    /// Share the rule objects between connections: a group message's frame is made once per rule.
    public var forwardRules: [String: ForwardRule]?
    /// Headers the handshake's answer carries (`Sec-WebSocket-Protocol`, say); set in ``WebSocketConsumer/connect()``.
    public var handshakeHeaders: [(name: String, value: String)] = []

    private let connection: ClientConnection

    init(channelName: String, connection: ClientConnection) {
        self.channelName = channelName
        self.connection = connection
    }

    /// This connection for code outside the consumer's task (``ConnectionHandle``).
    public var handle: ConnectionHandle { ConnectionHandle(connection: connection) }

    /// Sends a text frame to the client. Never waits: a client that does not read is closed with
    /// ``CloseCode/slowClient`` once its outbound buffer is full.
    public func send(text: String) {
        connection.post(ServerFrame.text(text))
    }

    /// Sends a binary frame to the client.
    public func send(binary: [UInt8]) {
        connection.post(ServerFrame.make(.binary, payload: binary))
    }

    /// Queues a JSON object as a text frame (the client frame format).
    public func send(json object: OrderedDictionary<String, MessageValue>) throws(ProtocolError) {
        send(text: try ClientFrame.encode(object))
    }

    /// Closes the connection after the frames already sent.
    public func close(code: UInt16 = CloseCode.normal, reason: String = "") {
        connection.requestClose(code: code, reason: reason)
    }

    /// Answers a frame the consumer could not use, following the node's invalid-frame policy: an error frame
    /// (the connection stays), or closing with ``CloseCode/invalidPayload``.
    public func refuse(_ code: ClientFrame.ErrorCode, detail: String) {
        switch limits.invalidFramePolicy {
        case .errorFrame: send(text: ClientFrame.error(code, detail: detail))
        case .close: close(code: CloseCode.invalidPayload, reason: String(detail.prefix(120)))
        }
    }

    /// Groups joined with presence.
    public var presenceGroups: Set<String> { Set(joinedWithPresence) }
    private var joinedWithPresence = SmallSet<String>()

    /// Joins a group with this connection's channel.
    public func groupAdd(_ group: String) async throws(ChannelLayerError) {
        try await layer.groupAdd(group, channel: channelName)
        joined(group)
    }

    private func joined(_ group: String) {
        if joinedGroups.insert(group) { connection.joined(group) }
    }

    /// Joins a group with presence: the group's presence lists this connection with the token's `sub` and
    /// `info` claims, and its members hear `join` and `leave` (clients that connected with `?presence=1`).
    /// Big rooms may prefer ``groupAdd(_:)``: no presence, no events.
    /// On a layer without presence (``PresenceChannelLayer``) this is a plain ``groupAdd(_:)``.
    public func groupAdd(_ group: String, presence: Bool) async throws(ChannelLayerError) {
        guard presence else { return try await groupAdd(group) }
        try await groupAdd(group, presence: PresenceInfo(user: scope.userID, info: scope.user?["info"]))
    }

    /// Joins a group with presence under `info` (who the connection is, for other members), for consumers that
    /// know their user otherwise than by a token's claims. On a layer without presence (``PresenceChannelLayer``)
    /// this is a plain ``groupAdd(_:)``.
    public func groupAdd(_ group: String, presence info: PresenceInfo) async throws(ChannelLayerError) {
        guard let layer = layer as? any PresenceChannelLayer else { return try await groupAdd(group) }
        try await layer.groupAdd(group, channel: channelName, presence: info)
        joined(group)
        joinedWithPresence.insert(group)
    }

    /// Leaves a group.
    public func groupDiscard(_ group: String) async throws(ChannelLayerError) {
        try await layer.groupDiscard(group, channel: channelName)
        if joinedGroups.remove(group) { connection.left(group) }
    }

    /// Sends a message to every member of a group, this connection included if it is a member.
    ///
    /// While members of the group fell behind reading, here or on another node, this first waits until they
    /// caught up, for ``ConnectionLimits/slowReaderGrace`` at most: publishers slow before readers are closed.
    public func groupSend(_ message: Message, to group: String) async throws(ChannelLayerError) {
        try await groupSend(message, to: group, confirmation: .awaited)
    }

    /// Sends a message to every member of a group; with ``GroupSendConfirmation/deferred``, returns once it is
    /// queued behind this connection's earlier sends to the group, without waiting for the layer to confirm it.
    ///
    /// A deferred send that the layer then refuses is reported as an awaited one whose error the consumer did
    /// not catch: the client gets an `unavailable` (or `unconfirmed`) error frame naming its frame, and the
    /// connection stays. At most ``deferredWindow`` sends wait for their confirmation; one more waits for the
    /// oldest. Layers that cannot queue a send at once (in memory, the core layer on several hosts, Redis
    /// Cluster, a shard reconnecting) send it as ``GroupSendConfirmation/awaited``.
    public func groupSend(_ message: Message, to group: String, confirmation: GroupSendConfirmation) async throws(ChannelLayerError) {
        await connection.pressure.admit(group)
        if confirmation == .deferred, let layer = layer as? any PipelinedGroupSendLayer {
            if let oldest = deferred.receiptToAwait() {
                // Its failure, if any, is reported by the handler below.
                try? await oldest.confirmed()
            }
            if let receipt = try layer.startGroupSend(message, to: group) {
                let frame = connection.handlingFrame
                let connection = connection
                receipt.onFailure { error in
                    if error.code == .unavailable { connection.reportUnavailable(error, frame: frame) }
                }
                deferred.started(receipt)
                return
            }
        }
        try await layer.groupSend(message, to: group)
    }

    /// How many deferred group sends of one connection wait for their confirmation at most.
    public static var deferredWindow: Int { DeferredSends.limit }
    private var deferred = DeferredSends()
}

/// When ``ConsumerContext/groupSend(_:to:confirmation:)`` returns.
public enum GroupSendConfirmation: Sendable, Hashable {
    /// Once the layer took the message, as Channels' `await group_send`: Redis answered.
    case awaited
    /// Once the message is queued in order behind the connection's earlier sends; the layer confirms it later.
    case deferred
}

/// Limits and policies every connection of a node follows.
public struct ConnectionLimits: Sendable, Hashable {
    /// How a consumer answers a frame it cannot use (invalid JSON, a missing field).
    public enum InvalidFramePolicy: String, Sendable, Hashable, CaseIterable {
        /// Send `{"type": "error", "error": "invalid_json", "detail": ...}` and keep the connection.
        case errorFrame = "error-frame"
        /// Close with 1007.
        case close
    }

    /// The largest message a client may send; larger ones close the connection with 1009.
    public var maxMessageSize: Int
    /// Layer messages waiting for a consumer's own handler code before the client is closed as slow (4008).
    public var maxQueuedMessages: Int
    /// Bytes waiting to be written to one client before it is closed as a slow client (4008).
    public var maxQueuedBytes: Int
    /// The largest frame a layer message may become (half of ``maxQueuedBytes``, so that an empty outbound
    /// buffer always takes one); larger messages are dropped before fan-out and counted.
    public var maxOutboundFrame: Int { maxQueuedBytes / 2 }
    /// Bytes of forward-rule frames that may wait behind a consumer's own work (four times ``maxQueuedBytes``):
    /// those frames are shared with the other members, and a batch of client frames the consumer group-sends
    /// comes back to it while the batch runs.
    public var maxForwardedBytes: Int { maxQueuedBytes * 4 }
    /// Past this many bytes waiting (a quarter of ``maxQueuedBytes``) a client is behind: publishers into its
    /// groups wait (``slowReaderGrace``) until it is back under half of it.
    public var softQueuedBytes: Int { maxQueuedBytes / 4 }
    /// How long a client behind may hold its groups' publishers, on every node; after it, a client that stopped
    /// reading fills its buffer and is closed with ``CloseCode/slowClient``. Zero: publishers never wait.
    public var slowReaderGrace: Duration
    /// What happens to frames a consumer cannot use.
    public var invalidFramePolicy: InvalidFramePolicy
    /// Messages per second a client may send on average; 0 = no limit. A client over it (after
    /// ``messageBurst``) is closed with ``CloseCode/rateLimited`` (4029).
    public var maxMessagesPerSecond: Double
    /// Messages a client may send at once above the rate (the token bucket's size).
    public var messageBurst: Int
    /// Connections a user (a token's `sub`) may hold on all nodes together; 0 = no limit. One more is closed
    /// with ``CloseCode/tooManyConnectionsForUser`` (4429).
    public var maxConnectionsPerUser: Int
    /// permessage-deflate (RFC 7692) with every client that offers it.
    public var compression: Bool
    /// Frames smaller than this many bytes go uncompressed (compressing them costs more than it saves).
    public var compressionMinSize: Int

    public init(
        maxMessageSize: Int = 64 * 1024,
        maxQueuedMessages: Int = 1024,
        maxQueuedBytes: Int = 4 * 1024 * 1024,
        invalidFramePolicy: InvalidFramePolicy = .errorFrame,
        maxMessagesPerSecond: Double = 0,
        messageBurst: Int = 50,
        maxConnectionsPerUser: Int = 0,
        compression: Bool = true,
        compressionMinSize: Int = 256,
        slowReaderGrace: Duration = .seconds(1)
    ) {
        self.slowReaderGrace = slowReaderGrace
        self.compression = compression
        self.compressionMinSize = compressionMinSize
        self.maxConnectionsPerUser = maxConnectionsPerUser
        self.maxMessageSize = maxMessageSize
        self.maxQueuedMessages = maxQueuedMessages
        self.maxQueuedBytes = maxQueuedBytes
        self.invalidFramePolicy = invalidFramePolicy
        self.maxMessagesPerSecond = maxMessagesPerSecond
        self.messageBurst = messageBurst
    }
}
