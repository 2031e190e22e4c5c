import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Stops accepting connections for a while when an accept fails for want of resources (out of file
/// descriptors, or of kernel memory), then accepts again; the open connections are served meanwhile.
///
/// NIO's `AcceptBackoffHandler` only delays the server channel's next `read()`. After an accept that fails
/// before any succeeded in the same wake-up, NIOPosix's `ServerSocketChannel` keeps its read pending (only a
/// successful accept clears it), so it never asks for that `read()` and never leaves the selector's read
/// interest: with connections waiting in the backlog, epoll reports the socket readable again at once and
/// every wake-up is one more failed `accept(2)` (a core at 100%, 14 million failures in 20 s). Turning
/// `autoRead` off is what takes the socket out of the read interest; turning it on again after ``pause``
/// puts it back.
final class AcceptPauseHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = any Channel
    typealias InboundOut = any Channel

    private let pause: TimeAmount
    private let onPause: (IOError) -> Void
    private var resume: Scheduled<Void>?

    /// - Parameters:
    ///   - pause: how long accepting stops after such a failure.
    ///   - onPause: called on the event loop for each failure that pauses accepting.
    init(pause: TimeAmount = .seconds(1), onPause: @escaping (IOError) -> Void) {
        self.pause = pause
        self.onPause = onPause
    }

    /// Failures that accepting again at once would only repeat.
    static func isExhaustion(_ error: IOError) -> Bool {
        [EMFILE, ENFILE, ENOBUFS, ENOMEM].contains(error.errnoCode)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let ioError = error as? IOError, Self.isExhaustion(ioError) else {
            context.fireErrorCaught(error)
            return
        }
        onPause(ioError)
        guard resume == nil, let options = context.channel.syncOptions else { return }
        do {
            try options.setOption(.autoRead, value: false)
        } catch {
            return
        }
        resume = context.eventLoop.assumeIsolated().scheduleTask(in: pause) { [self] in
            resume = nil
            try? options.setOption(.autoRead, value: true)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        resume?.cancel()
        resume = nil
        context.fireChannelInactive()
    }
}
