import ChannelLayers
import CoreMetrics
import NIOCore
import Synchronization

/// The admin event streams (`GET /api/events`) of a node: at most ``limit`` at once, and one producer per
/// watched group (or none) whose snapshots every stream watching the same thing shares.
///
/// A snapshot asks every node for its report, so it is made once per ``interval`` for all the streams that
/// want it, not once per stream: a producer starts with its first stream and stops with its last. A stream
/// that joins gets the latest snapshot at once.
final class EventStreamHub: Sendable {
    /// What a stream watches: the cluster, and a group in detail when given; returns the snapshot's JSON.
    typealias Snapshot = @Sendable (_ group: String?) async -> String

    /// The most streams open at once.
    let limit: Int
    /// How often a producer makes a snapshot.
    let interval: Duration
    private let metrics: NodeMetrics
    private let state = Mutex(State())

    private struct State {
        var feeds: [String?: Feed] = [:]
        var open = 0
        var nextID = 0
    }

    /// The streams watching one thing and their producer.
    private struct Feed {
        let generation: Int
        var subscribers: [Int: AsyncStream<ByteBuffer>.Continuation] = [:]
        var latest: ByteBuffer?
        var producer: Task<Void, Never>?
    }

    init(limit: Int, interval: Duration = .seconds(1), metrics: NodeMetrics) {
        self.limit = limit
        self.interval = interval
        self.metrics = metrics
    }

    /// Streams open now.
    var openStreams: Int { state.withLock { $0.open } }

    /// A new stream of server-sent events watching `group`; `nil` when ``limit`` streams are open.
    /// `snapshot` makes the snapshots when this stream is the first to watch `group`.
    func subscribe(group: String?, snapshot: @escaping Snapshot) -> AsyncStream<ByteBuffer>? {
        let (stream, continuation) = AsyncStream.makeStream(of: ByteBuffer.self, bufferingPolicy: .bufferingNewest(4))
        let opened: (id: Int, count: Int)? = state.withLock { state in
            guard state.open < limit else { return nil }
            state.open += 1
            state.nextID += 1
            let id = state.nextID
            continuation.yield(ByteBuffer(string: "retry: 2000\n\n"))
            var feed = state.feeds[group] ?? Feed(generation: id)
            if let latest = feed.latest { continuation.yield(latest) }
            feed.subscribers[id] = continuation
            if feed.producer == nil {
                let generation = feed.generation
                feed.producer = Task { [self] in await produce(group, generation: generation, snapshot: snapshot) }
            }
            state.feeds[group] = feed
            return (id, state.open)
        }
        guard let opened else {
            continuation.finish()
            metrics.apiEventStreamsRefused.increment()
            return nil
        }
        metrics.apiEventStreams.record(opened.count)
        continuation.onTermination = { [self] _ in unsubscribe(opened.id, from: group) }
        return stream
    }

    private func unsubscribe(_ id: Int, from group: String?) {
        let (producer, count): (Task<Void, Never>?, Int?) = state.withLock { state in
            guard state.feeds[group]?.subscribers.removeValue(forKey: id) != nil else { return (nil, nil) }
            state.open -= 1
            guard state.feeds[group]?.subscribers.isEmpty == true else { return (nil, state.open) }
            return (state.feeds.removeValue(forKey: group)?.producer, state.open)
        }
        producer?.cancel()
        if let count { metrics.apiEventStreams.record(count) }
    }

    /// Makes a snapshot every ``interval`` and sends it when it changed (compared without its time), a
    /// comment every 15 s otherwise so that proxies keep the streams open.
    private func produce(_ group: String?, generation: Int, snapshot: Snapshot) async {
        var last = ""
        var quietSince = ContinuousClock.now
        while !Task.isCancelled {
            let body = await snapshot(group)
            metrics.apiEventSnapshots.increment()
            if body != last {
                last = body
                quietSince = .now
                let stamped = #"{"at":"# + String(WallClock.now()) + (body.count > 2 ? "," : "") + body.dropFirst()
                publish(ByteBuffer(string: "event: snapshot\ndata: \(stamped)\n\n"), to: group, generation: generation, keep: true)
            } else if ContinuousClock.now - quietSince > .seconds(15) {
                quietSince = .now
                publish(ByteBuffer(string: ": keep-alive\n\n"), to: group, generation: generation, keep: false)
            }
            try? await Task.sleep(for: interval)
        }
    }

    private func publish(_ chunk: ByteBuffer, to group: String?, generation: Int, keep: Bool) {
        let subscribers: [AsyncStream<ByteBuffer>.Continuation] = state.withLock { state in
            // A producer cancelled while it made its snapshot does not write into a newer feed.
            guard var feed = state.feeds[group], feed.generation == generation else { return [] }
            if keep {
                feed.latest = chunk
                state.feeds[group] = feed
            }
            return Array(feed.subscribers.values)
        }
        for subscriber in subscribers { subscriber.yield(chunk) }
    }
}
