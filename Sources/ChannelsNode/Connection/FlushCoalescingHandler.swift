import NIOCore

/// Turns every flush into one flush at the end of the event loop's current tick.
///
/// Frames for one connection are written one by one by the WebSocket writer; without this each would be a
/// `write` system call. Sitting next to the socket, this handler lets all frames written in the same tick
/// leave in one `writev`.
final class FlushCoalescingHandler: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = NIOAny
    typealias OutboundOut = NIOAny

    private var flushScheduled = false

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        context.write(data, promise: promise)
    }

    /// A close in the same tick would fail the writes still waiting for the deferred flush (a close frame,
    /// typically): flush them first.
    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        if flushScheduled { context.flush() }
        context.close(mode: mode, promise: promise)
    }

    func flush(context: ChannelHandlerContext) {
        guard !flushScheduled else { return }
        flushScheduled = true
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        context.eventLoop.execute {
            let (handler, context) = loopBound.value
            handler.flushScheduled = false
            context.flush()
        }
    }
}

@available(*, unavailable)
extension FlushCoalescingHandler: Sendable {}
