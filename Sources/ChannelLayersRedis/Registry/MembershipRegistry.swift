import ChannelLayers
import HiredisClient
import Logging
import Synchronization

/// Records this process's group memberships in Redis for operators, under keys `redis-cli` can read.
///
/// With prefix `asgi`:
/// - `asgi:registry:nodes`: sorted set, member = node id, score = last heartbeat (Unix seconds).
/// - `asgi:registry:node:<node>`: hash `node`, `started_at`, `heartbeat_at`, `connections`, `channels`,
///   `groups`, `auth` (a fingerprint of the node's authentication settings, `none` without them); expires
///   30 s after the last heartbeat.
/// - `asgi:registry:group:<group>:<node>`: hash, field = member channel, value = join time (Unix seconds),
///   or for a member that joined with presence `{"at": <join time>, "user": <sub>, "info": <info claim>}`;
///   expires 30 s after the last heartbeat, so the members of a node that died vanish on their own.
///
/// Writes never sit on a caller's path: joins, leaves and heartbeats go into one ordered queue that a
/// single writer sends as pipelines. Each heartbeat rewrites the node's memberships, which also restores
/// them after Redis lost its data.
final class MembershipRegistry: Sendable {
    enum Operation: Sendable {
        case join(group: String, channel: String, value: String)
        case leave(group: String, channel: String)
        case heartbeat(Snapshot)
        case remove(groups: [String])
    }

    struct Snapshot: Sendable {
        var members: [String: [(channel: String, value: String)]]
        var channels: Int
        var connections: Int
    }

    let prefix: String
    let nodeID: String
    let ttl: Duration
    let authFingerprint: String
    let startedAt = WallClock.now()
    private let client: any RedisCommandSender
    private let logger: Logger
    private let queue = WriterQueue<[Operation]>([])

    init(client: any RedisCommandSender, prefix: String, nodeID: String, ttl: Duration, authFingerprint: String, logger: Logger) {
        self.authFingerprint = authFingerprint
        self.client = client
        self.prefix = prefix
        self.nodeID = nodeID
        self.ttl = ttl
        self.logger = logger
    }

    var nodesKey: String { RegistryKeys(prefix: prefix).nodes }
    var nodeKey: String { RegistryKeys(prefix: prefix).node(nodeID) }
    func groupKey(_ group: String) -> String { RegistryKeys(prefix: prefix).group(group, node: nodeID) }

    /// Deletes this node's entries now, bypassing the queue (at shutdown, once the writer has stopped).
    func removeNow(groups: [String]) async {
        _ = try? await client.pipeline(removalCommands(groups: groups))
    }

    private func removalCommands(groups: [String]) -> [RedisCommand] {
        [
            RedisCommand("DEL", arguments: [.string(nodeKey)] + groups.map { .string(groupKey($0)) }),
            RedisCommand("ZREM", .string(nodesKey), .string(nodeID)),
        ]
    }

    /// Writes a heartbeat with `snapshot` every `interval` until cancelled.
    func beat(every interval: Duration, snapshot: @Sendable () -> Snapshot) async {
        while !Task.isCancelled {
            enqueue(.heartbeat(snapshot()))
            try? await Task.sleep(for: interval)
        }
    }

    func enqueue(_ operation: Operation) {
        queue.update { $0.append(operation) }
    }

    /// Sends queued operations until cancelled, then sends what is left.
    func run() async {
        while !Task.isCancelled {
            let operations = await nextBatch()
            await write(operations)
        }
        await write(queue.withState { operations in
            defer { operations = [] }
            return operations
        })
    }

    private func nextBatch() async -> [Operation] {
        await queue.next(ready: { !$0.isEmpty }) { operations in
            defer { operations = [] }
            return operations
        }
    }

    private func write(_ operations: [Operation]) async {
        guard !operations.isEmpty else { return }
        let seconds = Int(ttl.components.seconds)
        var commands: [RedisCommand] = []
        for operation in operations {
            switch operation {
            case .join(let group, let channel, let value):
                commands.append(RedisCommand("HSET", .string(groupKey(group)), .string(channel), .string(value)))
                commands.append(RedisCommand("EXPIRE", .string(groupKey(group)), .integer(seconds)))
            case .leave(let group, let channel):
                commands.append(RedisCommand("HDEL", .string(groupKey(group)), .string(channel)))
            case .heartbeat(let snapshot):
                let now = WallClock.now()
                commands.append(
                    RedisCommand(
                        "HSET", .string(nodeKey), "node", .string(nodeID), "started_at", .string(String(startedAt)),
                        "heartbeat_at", .string(String(now)), "connections", .integer(snapshot.connections),
                        "channels", .integer(snapshot.channels), "groups", .integer(snapshot.members.count),
                        "auth", .string(authFingerprint)
                    )
                )
                commands.append(RedisCommand("EXPIRE", .string(nodeKey), .integer(seconds)))
                commands.append(RedisCommand("ZADD", .string(nodesKey), .string(String(now)), .string(nodeID)))
                // Nodes silent for an hour leave the listing; until then `channels-ctl nodes` shows them as stale.
                commands.append(RedisCommand("ZREMRANGEBYSCORE", .string(nodesKey), "-inf", .string(String(now - 3600))))
                for (group, members) in snapshot.members where !members.isEmpty {
                    var arguments: [RedisArgument] = [.string(groupKey(group))]
                    for member in members {
                        arguments.append(.string(member.channel))
                        arguments.append(.string(member.value))
                    }
                    commands.append(RedisCommand("HSET", arguments: arguments))
                    commands.append(RedisCommand("EXPIRE", .string(groupKey(group)), .integer(seconds)))
                }
            case .remove(let groups):
                commands += removalCommands(groups: groups)
            }
        }
        // A Redis just back may still be inside the client's reconnection backoff: a few short retries keep a
        // rewrite asked for right after a restart from waiting for the next heartbeat.
        for attempt in 1...4 {
            do {
                _ = try await client.pipeline(commands)
                return
            } catch {
                if attempt == 4 || Task.isCancelled {
                    logger.debug("registry write failed; the next heartbeat repairs it", metadata: ["error": "\(error.message)"])
                    return
                }
                try? await Task.sleep(for: .milliseconds(150 * attempt))
            }
        }
    }
}
