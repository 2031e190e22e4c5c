import NIOCore

/// A receiver the layer pushes a channel's messages to, instead of queueing them for
/// ``ChannelLayer/receive(from:)``.
///
/// A WebSocket connection is an inbox: the layer finds a group's local inboxes grouped by event loop and
/// hops once per event loop for all of them (``InboxDispatcher``), so a delivery costs no task and no
/// queue of its own. Both methods are called on ``eventLoop`` only.
public protocol ChannelInbox: AnyObject, Sendable {
    /// The event loop deliveries to this inbox run on.
    var eventLoop: any EventLoop { get }

    /// Takes one message. Returns `true` when this is the inbox's first delivery since its last
    /// ``endOfBatch()``, so that the dispatcher calls that once per inbox per batch.
    func receive(_ delivery: Delivery) -> Bool

    /// Every delivery of a batch was made: write out and flush what they produced.
    func endOfBatch()

    /// Messages for this inbox were lost on the way (the layer lost Redis): tell the client.
    func messagesLost(reason: String)

    /// Whether the inbox wants its groups' presence events (``PresenceEvent``); an inbox that declines is not
    /// called for them. Must stay the same for the inbox's life (layers read it under their own locks, from
    /// any thread). `true` unless an inbox says otherwise.
    var takesPresenceEvents: Bool { get }
}

extension ChannelInbox {
    public var takesPresenceEvents: Bool { true }
}
