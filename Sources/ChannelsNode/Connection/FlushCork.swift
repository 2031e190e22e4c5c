import NIOCore

/// Flushes the connections of one event loop together, a short delay after the first of them had layer
/// messages written (``NodeConfiguration/flushDelay``).
///
/// A drain writes each member what arrived since the last drain. Flushed at once, under load that was one
/// or two frames per socket write, and `write(2)`, with the kernel's work for each segment behind it, took
/// half a node's CPU (100 rooms of 10, flat out). Held for the delay, the loop polls its sockets once more
/// before it flushes: the client frames already waiting there are read and fanned out first, and a flush
/// carries their messages too: fewer, fuller writes, as with a corked socket. A quiet loop pays the delay
/// in latency, and a timer per drain.
///
/// Confined to its event loop.
final class FlushCork: @unchecked Sendable {
    private let delay: TimeAmount
    private let eventLoop: any EventLoop
    private var waiting: [ClientConnection] = []
    /// The list being flushed, kept for its capacity.
    private var spare: [ClientConnection] = []

    init(eventLoop: any EventLoop, delay: TimeAmount) {
        self.eventLoop = eventLoop
        self.delay = delay
    }

    /// Flushes `connection` with the others once the delay has passed. On the event loop, once until the
    /// connection was flushed (it keeps track).
    func add(_ connection: ClientConnection) {
        eventLoop.preconditionInEventLoop()
        if waiting.isEmpty {
            do {
                try eventLoop.assumeIsolated().scheduleCallback(in: delay, handler: self)
            } catch {
                // The loop is shutting down: nothing waits for a timer that will never run.
                connection.corkLifted()
                return
            }
        }
        waiting.append(connection)
    }

    private func flushAll() {
        // A flush can close a connection and so add another: it goes to the next round.
        swap(&waiting, &spare)
        for connection in spare { connection.corkLifted() }
        spare.removeAll(keepingCapacity: true)
    }
}

extension FlushCork: NIOScheduledCallbackHandler {
    func handleScheduledCallback(eventLoop: some EventLoop) {
        flushAll()
    }

    /// The loop stopped first: what was written still goes out as far as it can.
    func didCancelScheduledCallback(eventLoop: some EventLoop) {
        flushAll()
    }
}
