import ChannelsProtocol
import NIOCore
import Synchronization

/// One message on its way to a node's local inboxes, decoded once and shared by all of them.
///
/// What an inbox makes of a message for its client (a WebSocket frame for one output shape) is made by
/// the first inbox that needs it and reused by the others. Each event loop gets its own copy of the
/// delivery (``forAnotherLoop()``) whose frames are byte copies of the first loop's: one frame's reference
/// count retained by every member on two cores cost more than copying it once per loop.
public final class Delivery: Sendable {
    /// The message.
    public let message: Message
    /// The handler its `type` names (`chat.message` -> `chat_message`), or `nil` when it has no valid type.
    public let handlerName: String?
    /// The group it was sent to, or `nil` for a message sent to one channel.
    public let group: String?
    /// Its place in the group's history, when the group keeps one.
    public let position: HistoryPosition?
    /// The delivery this one copies for another event loop; it makes the frames and counts the sighting.
    private let origin: Delivery?

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
        self.origin = nil
    }

    private init(copying origin: Delivery) {
        self.message = origin.message
        self.handlerName = origin.handlerName
        self.group = origin.group
        self.position = origin.position
        self.origin = origin
    }

    /// The same delivery for the inboxes of another event loop.
    package func forAnotherLoop() -> Delivery {
        Delivery(copying: origin ?? self)
    }

    /// `true` for the first inbox that asks, `false` for the others: a node counts a group message once,
    /// however many of its connections get it.
    public func firstSight() -> Bool {
        if let origin { return origin.firstSight() }
        // A load first: the members after the first only read the flag, which keeps its cache line shared.
        return !sighted.load(ordering: .relaxed) && !sighted.exchange(true, ordering: .relaxed)
    }

    /// The bytes prepared for `shape`, made by `make` the first time any inbox asks; `nil` when `make`
    /// found the message cannot take that shape (it is not asked again).
    public func prepared(for shape: ObjectIdentifier, _ make: () -> ByteBuffer?) -> ByteBuffer? {
        if published.load(ordering: .acquiring), firstShape == shape { return firstFrame }
        return frames.withLock { frames in
            if let made = frames[shape] { return made }
            let made = origin.map { $0.prepared(for: shape, make).map(Self.copy) } ?? make()
            frames[shape] = made
            if !published.load(ordering: .relaxed) {
                firstShape = shape
                firstFrame = made
                published.store(true, ordering: .releasing)
            }
            return made
        }
    }

    private static func copy(_ frame: ByteBuffer) -> ByteBuffer {
        var copy = ByteBufferAllocator().buffer(capacity: frame.readableBytes)
        copy.writeImmutableBuffer(frame)
        return copy
    }
}
