import NIOCore

/// What the connections of one event loop share: the executor their consumer tasks run on, the wheel
/// that pings them and the cork that flushes them together. Made when the loop's first connection opens;
/// each connection keeps a reference, so opening and closing it take no lock.
final class LoopServices: Sendable {
    let eventLoop: any EventLoop
    let executor: EventLoopTaskExecutor
    /// Confined to the loop.
    let pingWheel: PingWheel
    /// Confined to the loop; none when flushes go out at once.
    let cork: FlushCork?

    init(eventLoop: any EventLoop, pingInterval: TimeAmount, flushDelay: TimeAmount) {
        self.eventLoop = eventLoop
        self.executor = EventLoopTaskExecutor(eventLoop)
        self.pingWheel = PingWheel(eventLoop: eventLoop, interval: pingInterval)
        self.cork = flushDelay > .zero ? FlushCork(eventLoop: eventLoop, delay: flushDelay) : nil
    }
}
