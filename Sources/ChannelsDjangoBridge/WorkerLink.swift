import ChannelLayers
import ChannelsProtocol
import Logging
import OrderedCollections
import Synchronization

/// What a node sends one worker: events gathered while the previous send is in flight, then sent as one
/// `swift_channels.events` message. One send at a time keeps them in order.
///
/// A send that fails (Redis down, a full queue on the core layer) is tried again with back-off for
/// ``retryTime``; after that the connections it carried are lost (closed with 1012 by the bridge).
final class WorkerLink: Sendable {
    let worker: String
    private let node: String
    private let layer: any ChannelLayer
    private let retryTime: Duration
    private let logger: Logger
    private let onFailure: @Sendable (_ connections: Set<String>) -> Void
    private let state = Mutex(State())

    private struct State {
        var items: [MessageValue] = []
        var sending = false
    }

    /// Items per message; a larger burst goes in several messages, in order.
    static let maxItems = 128

    init(
        worker: String, node: String, layer: any ChannelLayer, retryTime: Duration, logger: Logger,
        onFailure: @escaping @Sendable (Set<String>) -> Void
    ) {
        self.worker = worker
        self.node = node
        self.layer = layer
        self.retryTime = retryTime
        self.logger = logger
        self.onFailure = onFailure
    }

    func enqueue(_ item: MessageValue) {
        let start = state.withLock { state -> Bool in
            state.items.append(item)
            guard !state.sending else { return false }
            state.sending = true
            return true
        }
        if start { Task { await flush() } }
    }

    private func flush() async {
        while true {
            let batch = state.withLock { state -> [MessageValue]? in
                guard !state.items.isEmpty else {
                    state.sending = false
                    return nil
                }
                let batch = Array(state.items.prefix(Self.maxItems))
                state.items.removeFirst(batch.count)
                return batch
            }
            guard let batch else { return }
            let message: Message = [
                "type": .string(BridgeWire.events), "v": .int(BridgeWire.version), "node": .string(node), "events": .array(batch),
            ]
            if await !send(message) {
                onFailure(Set(batch.compactMap { $0.array?.first?.string }))
            }
        }
    }

    private func send(_ message: Message) async -> Bool {
        let deadline = ContinuousClock.now + retryTime
        var delay = Duration.milliseconds(20)
        while true {
            do throws(ChannelLayerError) {
                try await layer.send(message, to: worker)
                return true
            } catch {
                guard ContinuousClock.now + delay < deadline else {
                    logger.error(
                        "could not send events to a Django worker; its connections end",
                        metadata: ["worker": "\(worker)", "error": "\(error.message)", "for": "\(retryTime)"]
                    )
                    return false
                }
            }
            try? await Task.sleep(for: delay)
            delay = min(delay * 2, .seconds(1))
        }
    }
}
