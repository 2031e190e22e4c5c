import ChannelsProtocol
import NIOCore
import Synchronization

/// Hands messages to local inboxes: one hop per event loop, however many inboxes a message goes to there.
///
/// Each event loop has a mailbox. A dispatch appends to the mailboxes of the loops its inboxes live on and
/// schedules a drain only when the mailbox was empty, so under load one drain takes everything that piled
/// up (messages stored once, read once per loop turn) and each inbox flushes once per drain.
///
/// Nothing is dropped here. A producer that outruns the event loops is told to wait: ``hasRoom`` turns
/// false past ``highWater`` undrained messages, and ``whenDrained(_:)`` runs its action once the mailboxes
/// are back under ``lowWater``. The Redis layer stops reading its subscription socket meanwhile; the
/// in-memory layer's `groupSend` waits.
package final class InboxDispatcher: Sendable {
    /// Messages waiting in mailboxes before producers are asked to wait.
    package let highWater: Int
    /// Messages waiting in mailboxes below which waiting producers go on.
    package let lowWater: Int

    private final class Mailbox: Sendable {
        let eventLoop: any EventLoop
        let items = Mutex<(pending: [(Delivery, [any ChannelInbox])], scheduled: Bool)>(([], false))
        init(eventLoop: any EventLoop) { self.eventLoop = eventLoop }
    }

    private let mailboxes = Mutex<[ObjectIdentifier: Mailbox]>([:])
    private let undrained = Atomic<Int>(0)
    private let waiting = Mutex<[@Sendable () -> Void]>([])
    private let delivered = Atomic<Int>(0)

    package init(highWater: Int = 4096, lowWater: Int = 1024) {
        self.highWater = highWater
        self.lowWater = lowWater
    }

    /// Deliveries made so far (one per inbox per message).
    package var deliveries: Int { delivered.load(ordering: .relaxed) }

    /// Whether producers may go on without waiting.
    package var hasRoom: Bool { undrained.load(ordering: .relaxed) < highWater }

    /// Sends `delivery` to each group of inboxes, every inbox of a group living on its `eventLoop`.
    package func dispatch(_ delivery: Delivery, to members: [GroupIndex.LoopMembers]) {
        Self.split(delivery, over: members) { post($0, to: $1, on: $2) }
    }

    /// Each loop after the first gets its own copy of the frames a delivery makes (``Delivery/forAnotherLoop()``).
    fileprivate static func split(
        _ delivery: Delivery, over members: [GroupIndex.LoopMembers], _ body: (Delivery, [any ChannelInbox], any EventLoop) -> Void
    ) {
        var first = true
        for loop in members where !loop.inboxes.isEmpty {
            body(first ? delivery : delivery.forAnotherLoop(), loop.inboxes, loop.eventLoop)
            first = false
        }
    }

    /// Sends `delivery` to one inbox.
    package func dispatch(_ delivery: Delivery, to inbox: any ChannelInbox) {
        post(delivery, to: [inbox], on: inbox.eventLoop)
    }

    /// Dispatches gathered to be handed on together (``InboxDispatcher/dispatch(_:)``).
    ///
    /// A producer that routes many messages at once (a batch popped from a Redis queue) would otherwise wake a
    /// free event loop with its first message, and that loop would write each message to the members as it
    /// comes: one socket write per message per member instead of one per batch.
    package struct Batch {
        fileprivate var loops: [(eventLoop: any EventLoop, items: [(Delivery, [any ChannelInbox])])] = []

        package init() {}

        package var isEmpty: Bool { loops.isEmpty }

        /// Adds `delivery` for each group of inboxes, every inbox of a group living on its `eventLoop`.
        package mutating func add(_ delivery: Delivery, to members: [GroupIndex.LoopMembers]) {
            InboxDispatcher.split(delivery, over: members) { add($0, to: $1, on: $2) }
        }

        /// Adds `delivery` for one inbox.
        package mutating func add(_ delivery: Delivery, to inbox: any ChannelInbox) {
            add(delivery, to: [inbox], on: inbox.eventLoop)
        }

        private mutating func add(_ delivery: Delivery, to inboxes: [any ChannelInbox], on eventLoop: any EventLoop) {
            // A node has a few event loops: a scan beats hashing.
            if let index = loops.firstIndex(where: { $0.eventLoop === eventLoop }) {
                loops[index].items.append((delivery, inboxes))
            } else {
                loops.append((eventLoop, [(delivery, inboxes)]))
            }
        }
    }

    /// Hands on a batch's deliveries in their order: each event loop's share is posted at once.
    package func dispatch(_ batch: Batch) {
        for loop in batch.loops { post(loop.items, on: loop.eventLoop) }
    }

    /// Sends a message to one inbox, waiting first while producers are asked to (a layer's `send`).
    package func send(_ message: Message, to inbox: any ChannelInbox) async {
        await waitForRoom()
        dispatch(Delivery(message), to: inbox)
    }

    /// Runs `action` once fewer than ``lowWater`` messages wait (at once if that is already so).
    package func whenDrained(_ action: @escaping @Sendable () -> Void) {
        let now = waiting.withLock { waiting -> Bool in
            if undrained.load(ordering: .relaxed) < lowWater { return true }
            waiting.append(action)
            return false
        }
        if now { action() }
    }

    /// Waits until producers may go on.
    package func waitForRoom() async {
        guard !hasRoom else { return }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            whenDrained { continuation.resume() }
        }
    }

    private func mailbox(for eventLoop: any EventLoop) -> Mailbox {
        let key = ObjectIdentifier(eventLoop)
        return mailboxes.withLock { mailboxes in
            if let mailbox = mailboxes[key] { return mailbox }
            let mailbox = Mailbox(eventLoop: eventLoop)
            mailboxes[key] = mailbox
            return mailbox
        }
    }

    private func post(_ delivery: Delivery, to inboxes: [any ChannelInbox], on eventLoop: any EventLoop) {
        post(CollectionOfOne((delivery, inboxes)), on: eventLoop)
    }

    private func post(_ deliveries: some Collection<(Delivery, [any ChannelInbox])>, on eventLoop: any EventLoop) {
        let mailbox = mailbox(for: eventLoop)
        undrained.add(deliveries.count, ordering: .relaxed)
        let schedule = mailbox.items.withLock { items in
            items.pending.append(contentsOf: deliveries)
            defer { items.scheduled = true }
            return !items.scheduled
        }
        if schedule { eventLoop.execute { self.drain(mailbox) } }
    }

    private func drain(_ mailbox: Mailbox) {
        var touched: [any ChannelInbox] = []
        var count = 0
        var taken = 0
        // Messages that arrive while this drain writes are taken too before anything is flushed: under load a
        // batch grows instead of each message costing every member its own socket write.
        for _ in 0..<Self.maxRounds {
            let items = mailbox.items.withLock { items in
                defer { items.pending = [] }
                if items.pending.isEmpty { items.scheduled = false }
                return items.pending
            }
            if items.isEmpty { break }
            taken += items.count
            for (delivery, inboxes) in items {
                count += inboxes.count
                for inbox in inboxes where inbox.receive(delivery) {
                    touched.append(inbox)
                }
            }
        }
        for inbox in touched { inbox.endOfBatch() }
        delivered.add(count, ordering: .relaxed)
        let left = undrained.subtract(taken, ordering: .relaxed).newValue
        if left < lowWater {
            let actions = waiting.withLock { waiting in
                defer { waiting = [] }
                return waiting
            }
            for action in actions { action() }
        }
        // Still more after the last round: go on in a new task, so other work on this loop gets its turn.
        let more = mailbox.items.withLock { items in
            if items.pending.isEmpty {
                items.scheduled = false
                return false
            }
            return true
        }
        if more { mailbox.eventLoop.execute { self.drain(mailbox) } }
    }

    /// Rounds of a drain before it yields the event loop.
    private static let maxRounds = 8
}
