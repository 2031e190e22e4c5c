import Logging
import NIOCore
import NIOPosix
import Synchronization

/// Sharded pub/sub over Redis Cluster: each channel is held by `SSUBSCRIBE` on the primary of its slot,
/// with one sharded ``RedisSubscriber`` per primary that holds any, following the slot map.
///
/// The slot map is read again, and channels moved to where they now live, when a primary's connection is
/// lost or cannot be made (a failover), when Redis ends a subscription by itself (`sunsubscribe`: the slot
/// moved, or the node was demoted), and every ``checkInterval``. Messages published while a channel is
/// between primaries are lost; ``Event/interrupted(channels:error:)`` names the channels that may have
/// missed some, so a layer can tell the members.
public final class RedisClusterSubscriber: Sendable {
    /// What happened to the subscriptions.
    public enum Event: Sendable {
        /// These channels' subscription was down (connection lost, slot moved): messages may be lost.
        case interrupted(channels: [String], error: RedisError)
        /// These channels are subscribed again (on their slot's current primary).
        case restored(channels: [String])
        /// A primary cannot be reached; the slot map is being read again.
        case unreachable(node: RedisClusterTopology.Node, error: RedisError, attempt: Int)
    }

    private struct Holder {
        let subscriber: RedisSubscriber
        let tasks: [Task<Void, Never>]
    }

    private struct State {
        var wanted: Set<String> = []
        /// Where each wanted channel is subscribed (absent: not subscribed anywhere yet).
        var assigned: [String: RedisClusterTopology.Node] = [:]
        var holders: [RedisClusterTopology.Node: Holder] = [:]
        var stopped = false
    }

    /// The cluster's command client (its slot map is shared).
    public let client: RedisClusterClient
    /// How often the subscriptions are checked against the slot map without a cause.
    public let checkInterval: Duration
    /// Subscription changes, for a layer to count and tell its members.
    public let events: AsyncStream<Event>

    private let handler: RedisSubscriber.MessageHandler
    private let failsWhileUnreachable: Bool
    private let eventLoopGroup: any EventLoopGroup
    private let logger: Logger
    private let state = Mutex(State())
    private let eventContinuation: AsyncStream<Event>.Continuation
    private let triggers: AsyncStream<Void>
    private let trigger: AsyncStream<Void>.Continuation

    /// - Parameters:
    ///   - failsWhileUnreachable: subscribe calls for a primary that cannot be reached fail at once instead of
    ///     waiting for it (see ``RedisSubscriber``).
    ///   - onMessages: takes each read's messages on the event loop of the primary's connection;
    ///     return `false` to stop reading until ``resumeReading()``.
    public init(
        client: RedisClusterClient,
        checkInterval: Duration = .seconds(5),
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "HiredisClient.cluster-subscriber"),
        failsWhileUnreachable: Bool = false,
        onMessages: @escaping RedisSubscriber.MessageHandler
    ) {
        self.failsWhileUnreachable = failsWhileUnreachable
        self.client = client
        self.checkInterval = checkInterval
        self.handler = onMessages
        self.eventLoopGroup = eventLoopGroup
        self.logger = logger
        (events, eventContinuation) = AsyncStream.makeStream(of: Event.self, bufferingPolicy: .bufferingNewest(1024))
        (triggers, trigger) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// The channels wanted, subscribed or not.
    public var channels: Set<String> { state.withLock { $0.wanted } }

    /// Whether every wanted channel is subscribed on a live connection.
    public var isConnected: Bool {
        state.withLock { state in
            state.wanted.allSatisfy { name in state.assigned[name].flatMap { state.holders[$0]?.subscriber.isConnected } == true }
        }
    }

    /// Subscribes to shard channels on their primaries; returns once they confirmed.
    ///
    /// While a slot has no reachable primary the channels stay wanted and are subscribed by the next check.
    public func subscribe(_ names: [String]) async throws(RedisError) {
        guard !names.isEmpty else { return }
        state.withLock { $0.wanted.formUnion(names) }
        let topology = try await client.currentTopology()
        var byNode: [RedisClusterTopology.Node: [String]] = [:]
        for name in names {
            guard let node = topology.primary(for: name) else { continue }
            byNode[node, default: []].append(name)
        }
        for (node, group) in byNode {
            guard let subscriber = holder(for: node) else { throw RedisError(.clientClosed, "the cluster subscriber has stopped") }
            do {
                try await subscriber.subscribe(group)
            } catch {
                // Refused at once (the primary is unreachable): not kept, so not made later behind the caller's back.
                if !error.mayHaveRun, error.code != .timeout { state.withLock { $0.wanted.subtract(group) } }
                throw error
            }
            state.withLock { state in
                for name in group where state.wanted.contains(name) { state.assigned[name] = node }
            }
        }
        if byNode.values.reduce(0, { $0 + $1.count }) < names.count { trigger.yield() }
    }

    /// Unsubscribes from shard channels.
    public func unsubscribe(_ names: [String]) async throws(RedisError) {
        let byNode: [RedisClusterTopology.Node: [String]] = state.withLock { state in
            var byNode: [RedisClusterTopology.Node: [String]] = [:]
            for name in names {
                state.wanted.remove(name)
                if let node = state.assigned.removeValue(forKey: name) { byNode[node, default: []].append(name) }
            }
            return byNode
        }
        for (node, group) in byNode {
            if let subscriber = state.withLock({ $0.holders[node]?.subscriber }) { try await subscriber.unsubscribe(group) }
        }
    }

    /// Reads again on every primary's connection after the handler returned `false`.
    public func resumeReading() {
        for subscriber in state.withLock({ $0.holders.values.map(\.subscriber) }) { subscriber.resumeReading() }
    }

    /// Keeps the subscriptions where their slots live until cancelled.
    public func run() async {
        let ticker = Task { [trigger, checkInterval] in
            while !Task.isCancelled {
                try? await Task.sleep(for: checkInterval)
                trigger.yield()
            }
        }
        await withTaskCancellationHandler {
            for await _ in triggers {
                if Task.isCancelled { break }
                await reconcile()
            }
        } onCancel: {
            trigger.finish()
        }
        ticker.cancel()
        let holders = state.withLock { state in
            state.stopped = true
            defer { state.holders = [:] }
            return Array(state.holders.values)
        }
        for holder in holders {
            for task in holder.tasks { task.cancel() }
        }
        for holder in holders {
            for task in holder.tasks { await task.value }
        }
        eventContinuation.finish()
    }

    // MARK: - Internals

    /// The subscriber of a primary, started on first use.
    private func holder(for node: RedisClusterTopology.Node) -> RedisSubscriber? {
        state.withLock { state -> RedisSubscriber? in
            if state.stopped { return nil }
            if let holder = state.holders[node] { return holder.subscriber }
            let subscriber = RedisSubscriber(
                configuration: client.configuration(for: node),
                reconnectPolicy: RedisReconnectPolicy(initialDelay: .milliseconds(100), maximumDelay: .seconds(1)),
                eventLoopGroup: eventLoopGroup, logger: logger, sharded: true, failsWhileUnreachable: failsWhileUnreachable,
                onMessages: handler
            )
            let runner = Task { [logger] in
                do throws(RedisError) { try await subscriber.run() } catch {
                    logger.error("sharded pub/sub on \(node) stopped", metadata: ["error": "\(error.message)"])
                }
            }
            let watcher = Task { await self.watch(subscriber, node: node) }
            state.holders[node] = Holder(subscriber: subscriber, tasks: [runner, watcher])
            return subscriber
        }
    }

    private func watch(_ subscriber: RedisSubscriber, node: RedisClusterTopology.Node) async {
        for await event in subscriber.events {
            switch event {
            case .connectionLost(let error):
                let channels = state.withLock { state in state.assigned.filter { $0.value == node }.map(\.key) }
                eventContinuation.yield(.interrupted(channels: channels, error: error))
                trigger.yield()
            case .connectFailed(let error, let attempt, _):
                eventContinuation.yield(.unreachable(node: node, error: error, attempt: attempt))
                trigger.yield()
            case .unsubscribedByServer(let channel):
                let wanted = state.withLock { state -> Bool in
                    if state.assigned[channel] == node { state.assigned[channel] = nil }
                    return state.wanted.contains(channel)
                }
                if wanted {
                    eventContinuation.yield(.interrupted(channels: [channel], error: RedisError(.connectionClosed, "\(node) ended the subscription to \(channel) (its slot moved)")))
                    trigger.yield()
                }
            case .resubscribed:
                let channels = state.withLock { state in state.assigned.filter { $0.value == node }.map(\.key) }
                eventContinuation.yield(.restored(channels: channels))
            case .connected, .stopped:
                break
            }
        }
    }

    /// Reads the slot map and moves every wanted channel to its slot's primary; stops subscribers left with none.
    private func reconcile() async {
        guard let topology = try? await client.refreshTopology() else { return }
        let moves: [(name: String, from: RedisClusterTopology.Node?, to: RedisClusterTopology.Node)] = state.withLock { state in
            state.wanted.compactMap { name in
                guard let owner = topology.primary(for: name), state.assigned[name] != owner else { return nil }
                return (name, state.assigned[name], owner)
            }
        }
        var restored: [String] = []
        for move in moves {
            if let from = move.from, let old = state.withLock({ $0.holders[from]?.subscriber }) {
                try? await old.unsubscribe([move.name])
            }
            guard let subscriber = holder(for: move.to) else { return }
            do {
                try await subscriber.subscribe([move.name])
                let still = state.withLock { state -> Bool in
                    guard state.wanted.contains(move.name) else { return false }
                    state.assigned[move.name] = move.to
                    return true
                }
                if still { restored.append(move.name) }
            } catch {
                logger.warning("could not subscribe a shard channel on its new primary; retrying", metadata: ["channel": "\(move.name)", "node": "\(move.to)", "error": "\(error.message)"])
            }
        }
        if !restored.isEmpty {
            logger.info("shard channels moved to their slots' primaries", metadata: ["channels": "\(restored.count)"])
            eventContinuation.yield(.restored(channels: restored))
        }
        // Primaries that hold nothing any more (dead, demoted or emptied) are let go.
        let idle: [Holder] = state.withLock { state in
            let used = Set(state.assigned.values)
            let idleNodes = state.holders.keys.filter { !used.contains($0) && !topology.primaries.contains($0) }
            return idleNodes.compactMap { state.holders.removeValue(forKey: $0) }
        }
        for holder in idle { for task in holder.tasks { task.cancel() } }
    }
}
