import NIOCore

/// What the connections of one event loop share: the executor their consumer tasks run on and the wheel
/// that pings them. Made when the loop's first connection opens; each connection keeps a reference, so
/// opening and closing it take no lock.
final class LoopServices: Sendable {
    let eventLoop: any EventLoop
    let executor: EventLoopTaskExecutor
    /// Confined to the loop.
    let pingWheel: PingWheel

    init(eventLoop: any EventLoop, pingInterval: TimeAmount) {
        self.eventLoop = eventLoop
        self.executor = EventLoopTaskExecutor(eventLoop)
        self.pingWheel = PingWheel(eventLoop: eventLoop, interval: pingInterval)
    }
}
