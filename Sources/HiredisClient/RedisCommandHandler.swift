import NIOCore

/// Hands each reply to the oldest waiting caller and fails all callers when the connection ends.
final class RedisCommandHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = RedisReply

    private let queue: RedisCommandQueue
    private let address: RedisConfiguration.Address
    private var failure: RedisError?

    init(queue: RedisCommandQueue, address: RedisConfiguration.Address) {
        self.queue = queue
        self.address = address
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let reply = unwrapInboundIn(data)
        if !queue.deliver(reply) {
            failure = RedisError(.protocolError, "Redis at \(address) sent a reply nobody asked for: \(reply)")
            context.close(promise: nil)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if failure == nil {
            failure = (error as? RedisError) ?? RedisError(.connectionClosed, "connection to Redis at \(address) failed: \(error)")
        }
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        queue.close(
            with: failure ?? RedisError(
                .connectionClosed,
                "the connection to Redis at \(address) closed before the reply arrived; the command may or may not have run"
            )
        )
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        // Removed while the channel lives only when the connection becomes a subscriber; nothing is in flight then.
        if context.channel.isActive == false {
            queue.close(with: RedisError(.connectionClosed, "the connection to Redis at \(address) closed"))
        }
    }
}

@available(*, unavailable)
extension RedisCommandHandler: Sendable {}
