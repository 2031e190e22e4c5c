import NIOCore
import NIOWebSocket

/// Joins a client's fragmented message (RFC 6455 5.4) into one frame for ``ClientConnection``.
///
/// NIO's `NIOWebSocketFrameAggregator` drops the fragments' mask key and RSV1, so a fragmented message looked
/// unmasked (closed 1002) and a compressed one (RSV1 on its first fragment, RFC 7692 6.1) looked plain. This one
/// checks every fragment's mask, unmasks and joins them, and hands on one frame with the first fragment's RSV1 and
/// an all-zero mask key (the data is already unmasked; the connection's "masked" check holds). Errors are NIO's
/// aggregator errors, which the connection answers with 1009 or 1002.
final class ClientMessageAssembler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = WebSocketFrame
    typealias InboundOut = WebSocketFrame

    private let maxMessageSize: Int
    private let maxFragments: Int
    private var first: WebSocketFrame?
    private var joined: ByteBuffer?
    private var fragments = 0

    init(maxMessageSize: Int, maxFragments: Int = 1024) {
        self.maxMessageSize = maxMessageSize
        self.maxFragments = maxFragments
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .text, .binary:
            guard first == nil else { return fail(context, .receivedNewFrameWithoutFinishingPrevious) }
            if frame.fin { return context.fireChannelRead(data) }
            // Unmasked fragments go on as they are: the connection closes them with 1002.
            guard frame.maskKey != nil else { return context.fireChannelRead(data) }
            first = frame
            joined = frame.unmaskedData
            fragments = 1
        case .continuation:
            guard let start = first, var buffer = joined else { return fail(context, .didReceiveFragmentBeforeReceivingTextOrBinaryFrame) }
            guard frame.maskKey != nil else {
                reset()
                return context.fireChannelRead(data)
            }
            fragments += 1
            var piece = frame.unmaskedData
            guard fragments <= maxFragments else { return fail(context, .tooManyFragments) }
            guard buffer.readableBytes + piece.readableBytes <= maxMessageSize else { return fail(context, .accumulatedFrameSizeIsTooLarge) }
            buffer.writeBuffer(&piece)
            joined = buffer
            guard frame.fin else { return }
            reset()
            let whole = WebSocketFrame(
                fin: true, rsv1: start.rsv1, rsv2: start.rsv2, rsv3: start.rsv3, opcode: start.opcode,
                maskKey: WebSocketMaskingKey([0, 0, 0, 0] as [UInt8]), data: buffer
            )
            context.fireChannelRead(wrapInboundOut(whole))
        default:
            // Control frames may come between fragments.
            context.fireChannelRead(data)
        }
    }

    private func reset() {
        first = nil
        joined = nil
        fragments = 0
    }

    private func fail(_ context: ChannelHandlerContext, _ error: NIOWebSocketFrameAggregator.Error) {
        reset()
        context.fireErrorCaught(error)
    }
}

@available(*, unavailable)
extension ClientMessageAssembler: Sendable {}
