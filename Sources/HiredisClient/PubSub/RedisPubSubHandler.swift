import NIOCore

/// Reads a connection in subscribe mode: messages go to the subscriber in batches (one per read),
/// subscription confirmations and pongs to the subscriber's confirmation queue.
final class RedisPubSubHandler: ChannelInboundHandler {
    typealias InboundIn = RedisReply

    private let subscriber: RedisSubscriber
    private let connectionID: Int
    private var batch: [RedisPubSubMessage] = []

    init(subscriber: RedisSubscriber, connectionID: Int) {
        self.subscriber = subscriber
        self.connectionID = connectionID
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let reply = unwrapInboundIn(data)
        do {
            if let message = try classify(reply) {
                batch.append(message)
            }
        } catch {
            context.fireErrorCaught(error)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        flushBatch(context: context)
        context.fireChannelReadComplete()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        subscriber.recordFailure(
            (error as? RedisError) ?? RedisError(.connectionClosed, "pub/sub connection failed: \(error)"),
            connectionID: connectionID
        )
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        flushBatch(context: context)
        context.fireChannelInactive()
    }

    private func flushBatch(context: ChannelHandlerContext) {
        guard !batch.isEmpty else { return }
        let messages = batch
        batch.removeAll(keepingCapacity: true)
        if !subscriber.deliver(messages) {
            // Stop reading: Redis buffers for us (up to its client-output-buffer-limit) until the consumer catches up.
            subscriber.pauseReading(channel: context.channel, connectionID: connectionID)
        }
    }

    private func classify(_ reply: RedisReply) throws(RedisError) -> RedisPubSubMessage? {
        switch reply {
        case .array(let parts):
            guard let kind = parts.first?.string else { break }
            switch kind {
            case "message", "smessage":
                guard parts.count == 3, let channel = parts[1].string, let payload = parts[2].bytes else { break }
                return RedisPubSubMessage(channel: channel, payload: payload)
            case "pmessage":
                guard parts.count == 4, let pattern = parts[1].string, let channel = parts[2].string,
                    let payload = parts[3].bytes
                else { break }
                return RedisPubSubMessage(channel: channel, pattern: pattern, payload: payload)
            case "subscribe", "unsubscribe", "psubscribe", "punsubscribe", "ssubscribe":
                try subscriber.confirm(RedisSubscriber.ConfirmationKind(rawValue: kind)!, connectionID: connectionID)
                return nil
            case "sunsubscribe":
                // Also sent unasked when the channel's slot leaves this node; hiredis' async API knows no
                // shard pub/sub, so these arrive here as plain arrays.
                guard parts.count >= 2, let channel = parts[1].string else { break }
                try subscriber.shardUnsubscribed(channel, connectionID: connectionID)
                return nil
            case "pong":
                try subscriber.confirm(.pong, connectionID: connectionID)
                return nil
            default:
                break
            }
        case .status("PONG"):
            try subscriber.confirm(.pong, connectionID: connectionID)
            return nil
        case .error(let text):
            try subscriber.confirmError(text, connectionID: connectionID)
            return nil
        default:
            break
        }
        throw RedisError(.protocolError, "unexpected reply on a pub/sub connection: \(reply)")
    }
}

@available(*, unavailable)
extension RedisPubSubHandler: Sendable {}
