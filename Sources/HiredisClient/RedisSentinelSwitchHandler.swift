import NIOCore

/// Reads a sentinel's `+switch-master` channel: `<master name> <old ip> <old port> <new ip> <new port>`.
final class RedisSentinelSwitchHandler: ChannelInboundHandler {
    typealias InboundIn = RedisReply

    private let masterName: String
    private let onSwitch: @Sendable (String, Int) -> Void

    init(masterName: String, onSwitch: @escaping @Sendable (String, Int) -> Void) {
        self.masterName = masterName
        self.onSwitch = onSwitch
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .array(let parts) where parts.count == 3 && parts[0].string == "message":
            guard let payload = parts[2].string else { return }
            let fields = payload.split(separator: " ")
            guard fields.count == 5, fields[0] == masterName, let port = Int(fields[4]) else { return }
            onSwitch(String(fields[3]), port)
        case .array(let parts) where parts.first?.string == "subscribe":
            break
        default:
            // An error reply (an ACL refusing SUBSCRIBE, say): this sentinel cannot be watched; the watcher moves on.
            context.close(promise: nil)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

@available(*, unavailable)
extension RedisSentinelSwitchHandler: Sendable {}
