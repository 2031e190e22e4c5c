import NIOCore

/// Turns received bytes into ``RedisReply`` values with hiredis' reader.
///
/// A protocol error closes the channel: once framing is lost no later reply can be trusted.
final class RedisReplyHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = RedisReply

    private let decoder: RedisReplyDecoder

    init() throws(RedisError) {
        self.decoder = try RedisReplyDecoder()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        do {
            try decoder.feed(unwrapInboundIn(data))
            while let reply = try decoder.next() {
                context.fireChannelRead(wrapInboundOut(reply))
            }
        } catch {
            context.fireErrorCaught(error)
            context.close(promise: nil)
        }
    }
}

@available(*, unavailable)
extension RedisReplyHandler: Sendable {}
