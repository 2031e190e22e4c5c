import HiredisClient

/// What the pub/sub layer needs of a subscription: one Redis host (``RedisSubscriber``, `SUBSCRIBE`) or a
/// Redis Cluster's shards (``RedisClusterSubscriber``, `SSUBSCRIBE` on each slot's primary).
protocol LayerSubscriber: Sendable {
    func run() async throws(RedisError)
    func add(_ names: [String]) async throws(RedisError)
    func remove(_ names: [String]) async throws(RedisError)
    /// The channels held or wanted.
    var channels: Set<String> { get }
    var isConnected: Bool { get }
    func resumeReading()
    /// Connection changes, as the layer counts and reports them; iterate once.
    func layerEvents() -> AsyncStream<LayerSubscriberEvent>
}

/// A change the layer counts, logs and tells the members it concerns.
enum LayerSubscriberEvent: Sendable {
    /// Messages on these channels (`nil`: all of this subscriber's) may be lost until they are restored.
    case lost(RedisError, channels: [String]?)
    /// Subscriptions are back.
    case restored(channels: Int)
    /// Redis cannot be reached (attempt number).
    case unreachable(RedisError, attempt: Int)
}

extension RedisSubscriber: LayerSubscriber {
    func add(_ names: [String]) async throws(RedisError) { try await subscribe(names) }
    func remove(_ names: [String]) async throws(RedisError) { try await unsubscribe(names) }

    func layerEvents() -> AsyncStream<LayerSubscriberEvent> {
        events.mapped { event in
            switch event {
            case .connectionLost(let error): .lost(error, channels: nil)
            case .resubscribed(let channels, _): .restored(channels: channels)
            case .connectFailed(let error, let attempt, _): .unreachable(error, attempt: attempt)
            case .unsubscribedByServer(let channel): .lost(RedisError(.connectionClosed, "Redis ended the subscription to \(channel)"), channels: [channel])
            case .connected, .stopped: nil
            }
        }
    }
}

extension RedisClusterSubscriber: LayerSubscriber {
    func add(_ names: [String]) async throws(RedisError) { try await subscribe(names) }
    func remove(_ names: [String]) async throws(RedisError) { try await unsubscribe(names) }

    func layerEvents() -> AsyncStream<LayerSubscriberEvent> {
        events.mapped { event in
            switch event {
            case .interrupted(let channels, let error): .lost(error, channels: channels)
            case .restored(let channels): .restored(channels: channels.count)
            case .unreachable(_, let error, let attempt): .unreachable(error, attempt: attempt)
            }
        }
    }
}

extension AsyncStream where Element: Sendable {
    /// The elements `transform` maps to a value, forwarded by a task that ends with the stream or its reader.
    fileprivate func mapped(_ transform: @escaping @Sendable (Element) -> LayerSubscriberEvent?) -> AsyncStream<LayerSubscriberEvent> {
        AsyncStream<LayerSubscriberEvent> { continuation in
            let task = Task {
                for await element in self {
                    if let event = transform(element) { continuation.yield(event) }
                }
                continuation.finish()
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }
}
