import ChannelLayers
import ChannelsProtocol
import NIOCore

/// The node's bridge channel: workers' actions and heartbeats arrive here, on its event loop, with no task.
final class BridgeInbox: ChannelInbox {
    let eventLoop: any EventLoop
    private let onMessage: @Sendable (Message) -> Void
    private let onLoss: @Sendable (String) -> Void

    init(eventLoop: any EventLoop, onMessage: @escaping @Sendable (Message) -> Void, onLoss: @escaping @Sendable (String) -> Void) {
        self.eventLoop = eventLoop
        self.onMessage = onMessage
        self.onLoss = onLoss
    }

    func receive(_ delivery: Delivery) -> Bool {
        onMessage(delivery.message)
        // Nothing to flush per batch.
        return false
    }

    func endOfBatch() {}

    func messagesLost(reason: String) {
        onLoss(reason)
    }
}
