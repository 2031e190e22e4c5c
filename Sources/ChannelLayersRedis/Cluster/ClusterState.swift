import ChannelLayers
import ChannelsProtocol
import HiredisClient
import Logging
import OrderedCollections
import Synchronization

/// This node's part of the cluster's shared state in Redis (``ClusterScripts``): its users' connection
/// counts, the groups it has members of, its presence members; and taking out the part of a node that died.
///
/// Changes go into one ordered queue that a single writer sends, a batch per script call, so that a node's
/// changes reach Redis in the order it made them. The node also keeps what it holds (``Held``): after a
/// Redis error, a restart of Redis, or being taken out while it lived (a partition longer than the lease),
/// it states all of it again in one call instead of guessing which changes landed.
final class ClusterState: Sendable {
    /// What this node holds, as it stated it (connections admitted by the limit only once Redis said so).
    struct Held: Sendable {
        var users: [String: Int] = [:]
        var groups: Set<String> = []
        /// `{"user": ..., "info": ...}` of each channel present in a group. (The key shares the strings the
        /// layer already holds: a joined key was an allocation per idle connection.)
        var presence: [PresenceKey: String] = [:]
    }

    struct PresenceKey: Hashable, Sendable {
        let group: String
        let channel: String
    }

    private enum Operation: Sendable {
        case userJoin(String, limit: Int, CheckedContinuation<Int, any Error>)
        case userLeave(String)
        case groupOccupied(String)
        case groupEmptied(String)
        case presenceAdd(group: String, channel: String, value: String)
        case presenceRemove(group: String, channel: String)
        case touch
    }

    private struct Queue: Sendable {
        var operations: [Operation] = []
        var held = Held()
        /// The next call must state the whole state again.
        var restate = true
    }

    let base: String
    let nodeID: String
    let lease: Duration
    let maxEvents: Int
    private let client: any RedisCommandSender
    private let logger: Logger
    private let queue = WriterQueue(Queue())
    /// Called with the presence members of a node taken out: `(group, channel, value)`.
    private let onReaped: @Sendable (_ node: String, _ members: [(group: String, channel: String, value: String)]) async -> Void

    init(
        client: any RedisCommandSender, prefix: String, nodeID: String, lease: Duration, maxEvents: Int, logger: Logger,
        onReaped: @escaping @Sendable (_ node: String, _ members: [(group: String, channel: String, value: String)]) async -> Void
    ) {
        self.client = client
        self.base = ClusterScripts.base(prefix: prefix)
        self.nodeID = nodeID
        self.lease = lease
        self.maxEvents = maxEvents
        self.logger = logger
        self.onReaped = onReaped
    }

    // MARK: - Changes

    /// Counts a connection of `user`; with `limit` > 0 refuses it when the user has that many cluster-wide.
    /// Returns the user's connections after it (negative: refused, minus the count that refused it).
    func userJoin(_ user: String, limit: Int) async throws -> Int {
        try await withCheckedThrowingContinuation { continuation in
            enqueue(.userJoin(user, limit: limit, continuation))
        }
    }

    // What the node holds changes in the same step as the change is queued: a restatement (which takes both
    // at once) never holds a change that its queue then applies a second time.

    func userLeave(_ user: String) {
        queue.update { queue in
            queue.held.users[user, default: 0] -= 1
            if queue.held.users[user]! <= 0 { queue.held.users[user] = nil }
            queue.operations.append(.userLeave(user))
        }
    }

    func groupOccupied(_ group: String) {
        queue.update { queue in
            queue.held.groups.insert(group)
            queue.operations.append(.groupOccupied(group))
        }
    }

    func groupEmptied(_ group: String) {
        queue.update { queue in
            queue.held.groups.remove(group)
            queue.operations.append(.groupEmptied(group))
        }
    }

    func presenceAdd(group: String, channel: String, presence: PresenceInfo) {
        let value = Self.presenceValue(presence)
        queue.update { queue in
            queue.held.presence[PresenceKey(group: group, channel: channel)] = value
            queue.operations.append(.presenceAdd(group: group, channel: channel, value: value))
        }
    }

    func presenceRemove(group: String, channel: String) {
        queue.update { queue in
            queue.held.presence.removeValue(forKey: PresenceKey(group: group, channel: channel))
            queue.operations.append(.presenceRemove(group: group, channel: channel))
        }
    }

    static func presenceValue(_ presence: PresenceInfo) -> String {
        // Connections without a user share one value.
        if presence.user == nil, presence.info == nil { return anonymousPresenceValue }
        return serialize(presence)
    }

    private static let anonymousPresenceValue = serialize(PresenceInfo())

    private static func serialize(_ presence: PresenceInfo) -> String {
        let object: OrderedDictionary<String, MessageValue> = ["user": presence.user.map { .string($0) } ?? .null, "info": presence.info ?? .null]
        return (try? JSON.serialize(.map(object))) ?? #"{"user":null}"#
    }

    private func enqueue(_ operation: Operation) {
        queue.update { $0.operations.append(operation) }
    }

    // MARK: - Running

    /// Writes changes, renews the lease and takes out dead nodes until cancelled.
    func run(heartbeat: Duration, reapEvery: Duration) async {
        await withDiscardingTaskGroup { group in
            group.addTask { await self.write() }
            group.addTask {
                while !Task.isCancelled {
                    self.enqueue(.touch)
                    try? await Task.sleep(for: heartbeat)
                }
            }
            group.addTask {
                while !Task.isCancelled {
                    try? await Task.sleep(for: reapEvery)
                    if !Task.isCancelled { await self.reapDeadNodes() }
                }
            }
        }
    }

    /// Takes this node out at a clean shutdown: its users go offline and its groups empty now, not a lease later.
    func leave() async {
        _ = try? await client.send(RedisCommand("DEL", .string(base + "lease:" + nodeID)))
        _ = try? await client.send(RedisCommand("EVAL", .string(ClusterScripts.reap), 1, .string(base), .string(nodeID), .integer(maxEvents)))
    }

    private func write() async {
        var attempt = 0
        while !Task.isCancelled {
            let (operations, restate, held) = await nextBatch()
            guard !operations.isEmpty || restate else { continue }
            var arguments: [RedisArgument] = [.string(ClusterScripts.apply), 1, .string(base), .string(nodeID), .integer(maxEvents)]
            arguments.append(.integer(Int(lease.components.seconds) * 1000))
            var joins: [(user: String, limit: Int, continuation: CheckedContinuation<Int, any Error>)] = []
            if restate {
                // Everything held, then only the joins still waiting for an answer (the rest is in `held`).
                arguments.append("R")
                for (user, count) in held.users { arguments += ["U=", .string(user), .integer(count)] }
                for group in held.groups { arguments += ["G+", .string(group)] }
                for (key, value) in held.presence { arguments += ["P+", .string(key.group), .string(key.channel), .string(value)] }
            }
            for operation in operations {
                switch operation {
                case .userJoin(let user, let limit, let continuation):
                    arguments += ["U+", .string(user), .integer(limit)]
                    joins.append((user, limit, continuation))
                case .userLeave(let user) where !restate: arguments += ["U-", .string(user)]
                case .groupOccupied(let group) where !restate: arguments += ["G+", .string(group)]
                case .groupEmptied(let group) where !restate: arguments += ["G-", .string(group)]
                case .presenceAdd(let group, let channel, let value) where !restate: arguments += ["P+", .string(group), .string(channel), .string(value)]
                case .presenceRemove(let group, let channel) where !restate: arguments += ["P-", .string(group), .string(channel)]
                default: break
                }
            }
            do {
                let reply = try await client.send(RedisCommand("EVAL", arguments: arguments))
                if reply.string == "reaped" {
                    // Taken out while alive (a long partition) or Redis lost its data: state everything again.
                    logger.warning("this node's cluster state was gone from Redis; stating it again")
                    queue.withState { queue in
                        queue.restate = true
                        queue.operations.insert(contentsOf: joins.map { Operation.userJoin($0.user, limit: $0.limit, $0.continuation) }, at: 0)
                    }
                    continue
                }
                if case .error(let text) = reply { throw RedisError(.errorReply, text) }
                let counts = reply.array?.compactMap(\.integer) ?? []
                for (index, (user, _, continuation)) in joins.enumerated() {
                    let count = index < counts.count ? Int(counts[index]) : 1
                    if count > 0 { queue.withState { $0.held.users[user, default: 0] += 1 } }
                    continuation.resume(returning: count)
                }
                attempt = 0
            } catch {
                // The call may or may not have run: state everything again next time; a waiting connection
                // is not held for it.
                attempt += 1
                queue.withState { $0.restate = true }
                for join in joins { join.continuation.resume(throwing: error) }
                // The layer's own connection reports an unreachable Redis; this says so only if it lasts.
                if attempt % 30 == 0 {
                    logger.warning("could not write the cluster state; retrying", metadata: ["error": "\(error)", "attempts": "\(attempt)"])
                } else {
                    logger.debug("could not write the cluster state; retrying", metadata: ["error": "\(error)"])
                }
                try? await Task.sleep(for: .milliseconds(min(100 * attempt, 2000)))
                enqueue(.touch)
            }
        }
        for case .userJoin(_, _, let continuation) in queue.withState({ $0.operations }) {
            continuation.resume(throwing: CancellationError())
        }
    }

    private func nextBatch() async -> (operations: [Operation], restate: Bool, held: Held) {
        await queue.next(ready: { !$0.operations.isEmpty || $0.restate }) { queue in
            if Task.isCancelled { return ([], false, queue.held) }
            // Batches stay small enough for one script call; the rest goes in the next one.
            let count = min(queue.operations.count, 512)
            let operations = Array(queue.operations.prefix(count))
            queue.operations.removeFirst(count)
            defer { queue.restate = false }
            return (operations, queue.restate, queue.held)
        }
    }

    /// Takes out every node whose lease expired, once each across the cluster, and announces its presence
    /// members' departure.
    private func reapDeadNodes() async {
        do {
            guard let nodes = try await client.send(RedisCommand("SMEMBERS", .string(base + "nodes"))).array?.compactMap(\.string) else { return }
            let others = nodes.filter { $0 != nodeID }
            guard !others.isEmpty else { return }
            let alive = try await client.pipeline(others.map { RedisCommand("EXISTS", .string(base + "lease:" + $0)) })
            for (node, exists) in zip(others, alive) where exists.integer == 0 {
                let reply = try await client.send(
                    RedisCommand("EVAL", .string(ClusterScripts.reap), 1, .string(base), .string(node), .integer(maxEvents))
                )
                guard let items = reply.array else { continue }
                var members: [(group: String, channel: String, value: String)] = []
                var index = 0
                while index + 2 < items.count {
                    members.append((items[index].string ?? "", items[index + 1].string ?? "", items[index + 2].string ?? ""))
                    index += 3
                }
                logger.warning("a node's lease expired: took out its users, groups and presence", metadata: ["node": "\(node)", "members": "\(members.count)"])
                await onReaped(node, members)
            }
        } catch {
            logger.debug("could not look for dead nodes", metadata: ["error": "\(error.message)"])
        }
    }
}
