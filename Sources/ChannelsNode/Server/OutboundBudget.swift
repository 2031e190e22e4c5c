import ChannelLayers
import CMalloc
import CoreMetrics
import Logging
import NIOCore
import NIOPosix

/// The node-wide bound on bytes waiting in its connections' outbound buffers, and giving memory back after a
/// flood.
///
/// Each connection's buffer is bounded (``ConnectionLimits/maxQueuedBytes``), but many clients that stop
/// reading together still hold that much each. Every ``interval`` each event loop reads its connections'
/// backlogs (NIO's `bufferedWritableBytes`: nothing is counted per write); past ``limit`` the largest backlogs
/// of open connections are closed with 4008 until the rest fits. Connections already closing count as on their
/// way out. A frame shared by several members counts once for each of them, so the bound errs on the safe side.
///
/// glibc keeps freed memory in its arenas for reuse: after a flood the node's RSS stayed at its peak while idle.
/// Once backlogs of ``trimAfter`` bytes or more are gone, `malloc_trim(0)` gives the free pages back, at most
/// once every ``trimInterval``, on NIO's thread pool (it may hold an arena's lock for a few milliseconds).
final class OutboundBudget: Sendable {
    /// Queued bytes the node allows in all; 0: no bound (backlogs are still read, for the gauge and the trim).
    let limit: Int
    let interval: Duration
    let trimAfter: Int
    let trimInterval: Duration
    private let connections: ConnectionRegistry
    private let metrics: NodeMetrics
    private let warnings: WarningLimiter

    init(
        limit: Int, connections: ConnectionRegistry, metrics: NodeMetrics, warnings: WarningLimiter,
        interval: Duration = .milliseconds(200), trimAfter: Int = 64 * 1024 * 1024, trimInterval: Duration = .seconds(5)
    ) {
        self.limit = limit
        self.connections = connections
        self.metrics = metrics
        self.warnings = warnings
        self.interval = interval
        self.trimAfter = trimAfter
        self.trimInterval = trimInterval
    }

    /// The close reason of a connection closed for the budget.
    var reason: String { "the node's outbound budget (\(limit) bytes) is spent; this client's backlog is among the largest" }

    /// Checks every ``interval`` until cancelled.
    func run() async {
        var previous = 0
        var released = 0
        var lastTrim: ContinuousClock.Instant?
        while !Task.isCancelled {
            try? await Task.sleep(for: interval)
            let backlogs = await Self.backlogs(of: connections.all())
            let total = backlogs.reduce(0) { $0 + $1.bytes }
            metrics.outboundQueuedBytes.record(total)
            if limit > 0, total > limit {
                let closed = enforce(backlogs, total: total)
                if closed > 0 {
                    warnings.warn(
                        "closed the clients with the largest backlogs: the node's outbound budget is spent; raise --max-node-queued-bytes if the node has the memory",
                        metadata: ["queued": "\(total)", "budget": "\(limit)", "closed": "\(closed)"]
                    )
                }
            }
            released += max(0, previous - total)
            previous = total
            if released >= trimAfter, lastTrim.map({ ContinuousClock.now - $0 >= trimInterval }) ?? true {
                released = 0
                lastTrim = ContinuousClock.now
                await Self.trim()
            }
        }
    }

    /// Closes open connections, largest backlog first, until the open ones' backlogs fit the budget; how many.
    func enforce(_ backlogs: [Backlog], total: Int) -> Int {
        let leaving = backlogs.reduce(0) { $0 + ($1.open ? 0 : $1.bytes) }
        var excess = total - leaving - limit
        var closed = 0
        for backlog in backlogs.filter(\.open).sorted(by: { $0.bytes > $1.bytes }) {
            guard excess > 0, backlog.bytes > 0 else { break }
            backlog.connection.closeOverBudget(reason: reason)
            excess -= backlog.bytes
            closed += 1
        }
        return closed
    }

    struct Backlog: Sendable {
        let connection: ClientConnection
        let bytes: Int
        let open: Bool
    }

    /// Every connection's backlog, each read on its own event loop.
    static func backlogs(of connections: [ClientConnection]) async -> [Backlog] {
        var byLoop: [ObjectIdentifier: (loop: any EventLoop, connections: [ClientConnection])] = [:]
        for connection in connections {
            byLoop[ObjectIdentifier(connection.eventLoop), default: (connection.eventLoop, [])].connections.append(connection)
        }
        var backlogs: [Backlog] = []
        for (loop, members) in byLoop.values {
            let read = try? await loop.submit {
                members.compactMap { connection in
                    let (bytes, open) = connection.outboundBacklog()
                    return bytes > 0 ? Backlog(connection: connection, bytes: bytes, open: open) : nil
                }
            }.get()
            backlogs += read ?? []
        }
        return backlogs
    }

    /// Gives the allocator's free pages back to the system.
    static func trim() async {
        #if canImport(Glibc)
        _ = try? await NIOThreadPool.singleton.runIfActive { malloc_trim(0) }
        #endif
    }
}
