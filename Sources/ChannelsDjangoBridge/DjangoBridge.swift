import ChannelLayers
import ChannelsNode
import ChannelsProtocol
import CoreMetrics
import Logging
import NIOCore
import NIOPosix
import OrderedCollections
import ServiceLifecycle
import Synchronization

/// Hands WebSocket paths of a node to Django workers: the node holds the sockets, the connections' channels
/// and their groups; `swift-channels-worker` processes run the project's Channels consumers, unchanged.
///
/// ```swift
/// let bridge = DjangoBridge(configuration: .init(pathPrefixes: ["/ws/"]), layer: layer)
/// var router = ConsumerRouter()
/// bridge.install(in: &router)          // before any Swift route
/// // run `bridge` as a service beside the node (before it: it stops after the node drained)
/// ```
///
/// Nodes and workers talk through the channel layer (docs/django-bridge.md): heartbeats both ways, a worker
/// chosen per connection for its life, numbered events to it and numbered actions back. A worker whose
/// heartbeats stop for its lease is lost: its connections close with 1012.
public final class DjangoBridge: Service, Sendable {
    /// The bridge's own groups (`swift_channels.workers`, `swift_channels.nodes`): keep them out of listings.
    public static let unlistedGroupPrefixes = ["swift_channels."]

    public let configuration: DjangoBridgeConfiguration
    let layer: any InboxChannelLayer
    let logger: Logger
    let metrics = DjangoBridgeMetrics()
    private let pool = Mutex(WorkerPool())
    private let connections = Mutex<[String: BridgedConnection]>([:])
    private let links = Mutex<[String: WorkerLink]>([:])
    /// The node's bridge channel once it joined the layer.
    private let joined = Mutex<String?>(nil)
    /// Forward rules by their fields, shared by every connection that uses them: a group message's frame is
    /// made once per rule object.
    private let rules = Mutex<[[String]: ForwardRule]>([:])
    private let eventLoop: any EventLoop

    public init(
        configuration: DjangoBridgeConfiguration, layer: any InboxChannelLayer,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, logger: Logger = Logger(label: "channels-django")
    ) {
        self.configuration = configuration
        self.layer = layer
        self.logger = logger
        self.eventLoop = eventLoopGroup.next()
    }

    /// Routes the configured prefixes to the workers, ahead of every pattern route of `router`.
    public func install(in router: inout ConsumerRouter) {
        for prefix in configuration.pathPrefixes {
            router.add(prefix: prefix, DjangoBridgeConsumer.self) { [self] context in DjangoBridgeConsumer(context: context, bridge: self) }
        }
    }

    /// Ready workers this node hears.
    public var readyWorkers: Int { pool.withLock { $0.readyCount } }

    // MARK: - Service

    /// Joins the layer (its bridge channel and the workers' group, retrying while Redis is not there), then
    /// sends heartbeats and watches the workers' leases until graceful shutdown; then says goodbye.
    public func run() async throws {
        guard let channel = await join() else { return }
        logger.info("Django bridge ready", metadata: ["prefixes": "\(configuration.pathPrefixes)", "channel": "\(channel)"])
        var lastBeat = ContinuousClock.now - configuration.heartbeatInterval
        var lastHoleCheck = ContinuousClock.now
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            let now = ContinuousClock.now
            if now - lastBeat >= configuration.heartbeatInterval {
                lastBeat = now
                await heartbeat(channel, state: "up")
            }
            checkLeases(at: now)
            // Holes last seconds: every connection is looked at once a second, not at every tick.
            if now - lastHoleCheck >= .seconds(1) {
                lastHoleCheck = now
                checkHoles(at: now)
            }
            try? await Task.sleep(for: .milliseconds(250))
        }
        await heartbeat(channel, state: "gone")
        try? await layer.groupDiscard(BridgeWire.workersGroup, channel: channel)
        await layer.deleteChannel(channel)
    }

    private func join() async -> String? {
        let inbox = BridgeInbox(
            eventLoop: eventLoop, onMessage: { [self] message in received(message) },
            onLoss: { [logger] reason in logger.warning("the Django bridge's channel lost messages", metadata: ["reason": "\(reason)"]) }
        )
        var failures = 0
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            do throws(ChannelLayerError) {
                let channel = try await layer.newChannel(prefix: "specific.", inbox: inbox)
                do throws(ChannelLayerError) {
                    try await layer.groupAdd(BridgeWire.workersGroup, channel: channel)
                } catch {
                    await layer.deleteChannel(channel)
                    throw error
                }
                joined.withLock { $0 = channel }
                return channel
            } catch {
                failures += 1
                if failures == 1 || failures % 30 == 0 {
                    logger.warning("the Django bridge cannot join the channel layer yet; retrying", metadata: ["error": "\(error.message)"])
                }
                try? await Task.sleep(for: .milliseconds(min(100 * failures, 1000)))
            }
        }
        return nil
    }

    private func heartbeat(_ channel: String, state: String) async {
        let beat: Message = [
            "type": .string(BridgeWire.nodeHeartbeat), "v": .int(BridgeWire.version), "node": .string(channel), "state": .string(state),
            "lease": .double(BridgeWire.nodeLease), "history": .array(configuration.historyPatterns.map(MessageValue.string)),
        ]
        try? await layer.groupSend(beat, to: BridgeWire.nodesGroup)
    }

    private func checkLeases(at now: ContinuousClock.Instant) {
        let (lost, ready) = pool.withLock { pool in (pool.expire(at: now), pool.readyCount) }
        metrics.workers.record(ready)
        for worker in lost {
            metrics.workerLosses.increment()
            let count = endConnections(of: worker, why: "Django worker lost")
            logger.warning("a Django worker stopped answering; its connections were closed with 1012", metadata: ["worker": "\(worker)", "connections": "\(count)"])
        }
    }

    private func checkHoles(at now: ContinuousClock.Instant) {
        let holes = connections.withLock { connections in
            connections.values.filter { $0.holeOpen(longerThan: configuration.holeTimeout, at: now) }
        }
        for connection in holes where connection.lose("events from the Django worker were lost") {
            metrics.lostConnections.increment()
        }
    }

    /// Closes a worker's connections with 1012 and forgets its link; returns how many were open.
    @discardableResult
    private func endConnections(of worker: String, why: String) -> Int {
        links.withLock { _ = $0.removeValue(forKey: worker) }
        let affected = connections.withLock { $0.values.filter { $0.worker == worker } }
        var count = 0
        for connection in affected where connection.lose(why) {
            count += 1
            metrics.lostConnections.increment()
        }
        return count
    }

    // MARK: - From the bridge channel

    private func received(_ message: Message) {
        switch message.type {
        case BridgeWire.actions:
            // One lookup at a time: a copy of the table would be copied again by the next open or close.
            func connection(_ name: String) -> BridgedConnection? { connections.withLock { $0[name] } }
            for item in message["actions"]?.array ?? [] {
                guard let parts = item.array, parts.count == 4, let name = parts[0].string, let seq = parts[1].int, let kind = parts[2].string else {
                    logger.warning("ignored a malformed action from a Django worker", metadata: ["item": "\(item)"])
                    continue
                }
                guard let connection = connection(name) else { continue }
                guard let action = BridgeWire.Action(kind: kind, body: parts[3]) else {
                    logger.warning("ignored an action this node does not know", metadata: ["kind": "\(kind)"])
                    continue
                }
                connection.received(seq, action)
            }
            for (name, count) in message["taken"]?.map ?? [:] {
                if let count = count.int { connection(name)?.took(count) }
            }
        case BridgeWire.workerHeartbeat:
            guard let worker = message["worker"]?.string, let state = message["state"]?.string.flatMap(WorkerPool.State.init(rawValue:)) else { return }
            let lease = Duration.milliseconds(Int64((message["lease"]?.double ?? 3) * 1000))
            let change = pool.withLock { pool in
                pool.heard(
                    worker, state: state, connections: Int(message["connections"]?.int ?? 0), lease: lease,
                    host: message["host"]?.string ?? "?", pid: Int(message["pid"]?.int ?? 0), at: .now
                )
            }
            switch change {
            case .joined:
                logger.info("a Django worker joined", metadata: ["worker": "\(worker)", "host": "\(message["host"]?.string ?? "?")"])
            case .left:
                endConnections(of: worker, why: "Django worker stopped")
                logger.info("a Django worker left", metadata: ["worker": "\(worker)"])
            case .none:
                break
            }
            metrics.workers.record(readyWorkers)
        default:
            break
        }
    }

    // MARK: - For the consumers

    /// A connection to `worker` for `name`, registered so that actions find it; `nil` when the bridge has not
    /// joined the layer yet.
    func open(_ name: String, worker: String, handle: ConnectionHandle) -> BridgedConnection? {
        guard let node = joined.withLock({ $0 }) else { return nil }
        let link = links.withLock { links in
            if let link = links[worker] { return link }
            let link = WorkerLink(
                worker: worker, node: node, layer: layer, retryTime: configuration.sendRetryTime, logger: logger,
                onFailure: { [self] names in
                    let failed = connections.withLock { connections in names.compactMap { connections[$0] } }
                    for connection in failed where connection.lose("the Django worker cannot be reached") { metrics.lostConnections.increment() }
                }
            )
            links[worker] = link
            return link
        }
        let connection = BridgedConnection(name: name, worker: worker, handle: handle, link: link, metrics: metrics, window: configuration.window)
        connections.withLock { $0[name] = connection }
        return connection
    }

    func close(_ connection: BridgedConnection) {
        connections.withLock { connections in
            if connections[connection.name] === connection { connections.removeValue(forKey: connection.name) }
        }
    }

    func chooseWorker(excluding excluded: Set<String>) -> String? {
        pool.withLock { $0.choose(excluding: excluded) }
    }

    /// The shared rule for these fields.
    func rule(fields: [String]) -> ForwardRule {
        rules.withLock { rules in
            if let rule = rules[fields] { return rule }
            let rule = ForwardRule(fields: fields)
            rules[fields] = rule
            return rule
        }
    }

    /// Calls `body` after `delay` unless the returned task is cancelled first.
    func after(_ delay: Duration, _ body: @escaping @Sendable () -> Void) -> Scheduled<Void> {
        eventLoop.scheduleTask(in: .nanoseconds(delay.nanoseconds)) { body() }
    }
}
