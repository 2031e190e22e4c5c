import ChannelsProtocol
import NIOCore
import Synchronization

/// One message on its way to a node's local inboxes, decoded once and shared by all of them.
///
/// What an inbox makes of a message for its client (a WebSocket frame for one output shape) is made by
/// the first inbox that needs it and reused by the others, on any event loop.
public final class Delivery: Sendable {
    /// The message.
    public let message: Message
    /// The handler its `type` names (`chat.message` -> `chat_message`), or `nil` when it has no valid type.
    public let handlerName: String?
    /// The group it was sent to, or `nil` for a message sent to one channel.
    public let group: String?
    /// Its place in the group's history, when the group keeps one.
    public let position: HistoryPosition?

    private let frames = Mutex<[ObjectIdentifier: ByteBuffer?]>([:])
    private let sighted = Atomic<Bool>(false)
    /// The first shape made, published for reading without the lock: on a node most messages take one
    /// shape, and every member after the first reads it with one atomic load. Written once, under the
    /// lock, before ``published`` is set (releasing); read only after it was seen set (acquiring).
    private let published = Atomic<Bool>(false)
    nonisolated(unsafe) private var firstShape: ObjectIdentifier?
    nonisolated(unsafe) private var firstFrame: ByteBuffer?

    public init(_ message: Message, group: String? = nil, position: HistoryPosition? = nil) {
        self.message = message
        self.handlerName = try? message.handlerName()
        self.group = group
        self.position = position
    }

    /// `true` for the first inbox that asks, `false` for the others: a node counts a group message once,
    /// however many of its connections get it.
    public func firstSight() -> Bool {
        // A load first: the members after the first only read the flag, which keeps its cache line shared.
        !sighted.load(ordering: .relaxed) && !sighted.exchange(true, ordering: .relaxed)
    }

    /// The bytes prepared for `shape`, made by `make` the first time any inbox asks; `nil` when `make`
    /// found the message cannot take that shape (it is not asked again).
    public func prepared(for shape: ObjectIdentifier, _ make: () -> ByteBuffer?) -> ByteBuffer? {
        if published.load(ordering: .acquiring), firstShape == shape { return firstFrame }
        return frames.withLock { frames in
            if let made = frames[shape] { return made }
            let made = make()
            frames[shape] = made
            if !published.load(ordering: .relaxed) {
                firstShape = shape
                firstFrame = made
                published.store(true, ordering: .releasing)
            }
            return made
        }
    }
}
