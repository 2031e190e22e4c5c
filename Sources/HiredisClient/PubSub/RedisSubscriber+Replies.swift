import DequeModule
import Logging
import NIOCore
import NIOPosix
import Synchronization

extension RedisSubscriber {
    /// Returns whether to keep reading.
    func deliver(_ batch: [RedisPubSubMessage]) -> Bool {
        box.mutex.withLock { $0.machine.received(batch.count) }
        if let handler { return handler(batch) }
        return source.yield(contentsOf: batch) != .stopProducing
    }

    func pauseReading(channel: any Channel, connectionID: Int) {
        if box.mutex.withLock({ $0.machine.pauseReading(connection: connectionID) }) {
            try? channel.syncOptions?.setOption(.autoRead, value: false)
        }
    }

    func recordFailure(_ error: RedisError, connectionID: Int) {
        box.mutex.withLock { $0.machine.recordFailure(error, connection: connectionID) }
    }

    func confirm(_ kind: ConfirmationKind, connectionID: Int) throws(RedisError) {
        try settle(box.mutex.withLock { $0.machine.confirm(kind, connection: connectionID) })
    }

    /// A `sunsubscribe` reply: the confirmation of ours, or Redis dropping the channel by itself (its slot
    /// moved, or this node is no longer a primary).
    func shardUnsubscribed(_ channel: String, connectionID: Int) throws(RedisError) {
        switch box.mutex.withLock({ $0.machine.shardUnsubscribed(channel, connection: connectionID) }) {
        case .ours(let confirmed): try settle(confirmed)
        case .byServer: eventContinuation.yield(.unsubscribedByServer(channel: channel))
        case .stale: break
        }
    }

    func confirmError(_ text: String, connectionID: Int) throws(RedisError) {
        switch box.mutex.withLock({ $0.machine.refused(connection: connectionID) }) {
        case .stale:
            break
        case .unexpected:
            throw RedisError(.protocolError, "Redis sent an error nobody waited for: \(text)")
        case .refused(let completion, let kind):
            complete(completion, with: .failure(RedisError.fromErrorReply(text, command: kind.command)))
        }
    }

    func settle(_ confirmed: SubscriptionStateMachine.Confirmed) throws(RedisError) {
        switch confirmed {
        case .none: break
        case .complete(let completion): complete(completion, with: .success(()))
        case .protocolError(let error): throw error
        }
    }
}
