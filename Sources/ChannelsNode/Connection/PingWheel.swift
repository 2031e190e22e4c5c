import NIOCore

/// Pings the quiet connections of one event loop: one timer per loop, not one per connection.
///
/// A timer per connection cost each idle connection a repeated task, its scheduled task and their promise:
/// several hundred bytes, a twentieth of its memory. Here a connection is an entry in one of ``slotCount``
/// slots; a tick every interval / ``slotCount`` visits the next slot, so each connection is visited once per
/// interval, the first time about one interval after it joined (it joins the slot just visited).
///
/// Confined to its event loop.
final class PingWheel: @unchecked Sendable {
    static let slotCount = 8

    private let eventLoop: any EventLoop
    private let tick: TimeAmount
    private var slots: [[ObjectIdentifier: ClientConnection]] = Array(repeating: [:], count: PingWheel.slotCount)
    /// The slot visited last.
    private var hand = 0
    private var timer: RepeatedTask?
    private var stopped = false

    init(eventLoop: any EventLoop, interval: TimeAmount) {
        self.eventLoop = eventLoop
        self.tick = .nanoseconds(max(1, interval.nanoseconds / Int64(Self.slotCount)))
    }

    /// Adds a connection; returns its slot, for ``remove(_:slot:)``. On the event loop.
    func add(_ connection: ClientConnection) -> Int {
        eventLoop.preconditionInEventLoop()
        slots[hand][ObjectIdentifier(connection)] = connection
        if timer == nil, !stopped {
            timer = eventLoop.scheduleRepeatedTask(initialDelay: tick, delay: tick) { [self] _ in visitNextSlot() }
        }
        return hand
    }

    /// Forgets a connection (its socket closed). On the event loop.
    func remove(_ connection: ClientConnection, slot: Int) {
        slots[slot].removeValue(forKey: ObjectIdentifier(connection))
    }

    /// Stops the timer and forgets every connection (the node stopped). On the event loop.
    func stop() {
        stopped = true
        timer?.cancel()
        timer = nil
        slots = Array(repeating: [:], count: Self.slotCount)
    }

    private func visitNextSlot() {
        hand = (hand + 1) % Self.slotCount
        // A visit may close a connection, which removes it from this slot: iterate over a copy.
        for connection in slots[hand].values { connection.checkAlive() }
    }
}

extension PingWheel {
    /// Stops the timer from any thread.
    func stopOnItsLoop() {
        eventLoop.execute { [self] in stop() }
    }
}
