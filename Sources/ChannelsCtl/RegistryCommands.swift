import ArgumentParser
import ChannelLayers
import ChannelLayersRedis
import ChannelsProtocol
import HiredisClient
import OrderedCollections

/// `channels-ctl groups [pattern]`
struct GroupsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "groups", abstract: "List groups with members on live nodes (glob pattern, e.g. 'chat_*')."
    )

    @OptionGroup var redis: RedisOptions
    @Argument(help: "A glob over group names.") var pattern = "*"

    func run() async throws {
        let (reader, connection) = try await redis.reader()
        let groups = try await RedisCall.run { () throws(RedisError) in try await reader.groups(matching: pattern) }
        await connection.close()
        if redis.json {
            Output.json(.array(groups.map { Output.object(["group": .string($0.name), "members": .int(Int64($0.members)), "nodes": .array($0.nodes.map { .string($0) })]) }))
        } else {
            Output.table(["GROUP", "MEMBERS", "NODES"], groups.map { [$0.name, String($0.members), $0.nodes.joined(separator: ",")] })
        }
    }
}

/// `channels-ctl members <group>`
struct MembersCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "members",
        abstract: "Show a group's members: channel, node, join time.",
        discussion: "With --layer core, Django's own members (from its asgi:group:<group> sorted set) are listed too, on node 'django'."
    )

    @OptionGroup var redis: RedisOptions
    @Argument(help: "The group.") var group: String

    func run() async throws {
        guard ChannelNames.isValidGroup(group) else { throw CtlFailure(ChannelNames.errorText("Group")) }
        let (reader, connection) = try await redis.reader()
        var members = try await RedisCall.run { () throws(RedisError) in try await reader.members(of: group) }
        await connection.close()
        if try redis.resolvedLayer() == .core {
            members += try await djangoMembers(except: Set(members.map(\.channel)))
            members.sort { ($0.joinedAt, $0.channel) < ($1.joinedAt, $1.channel) }
        }
        if redis.json {
            Output.json(.array(members.map { Output.object(["channel": .string($0.channel), "node": .string($0.node ?? "-"), "joined_at": .double($0.joinedAt)]) }))
        } else {
            Output.table(["CHANNEL", "NODE", "JOINED (UTC)"], members.map { [$0.channel, $0.node ?? "-", Output.time($0.joinedAt)] })
        }
    }

    /// The core layer's group sorted set, on the host channels_redis hashes the group to, without the
    /// members the registry already named (Swift nodes write both).
    private func djangoMembers(except known: Set<String>) async throws -> [RegistryReader.Member] {
        let connection = try await redis.connect(host: ShardRing.index(of: group, hostCount: redis.resolvedURLs.count))
        defer { Task { await connection.close() } }
        return try await RedisCall.run { () throws(RedisError) in
            try await RegistryReader.djangoMembers(of: group, prefix: redis.resolvedPrefix, on: connection, except: known)
        }
    }
}

/// `channels-ctl presence <group>`
struct PresenceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "presence", abstract: "Show who is in a group: members that joined with presence, their user and info."
    )

    @OptionGroup var redis: RedisOptions
    @Argument(help: "The group.") var group: String

    func run() async throws {
        guard ChannelNames.isValidGroup(group) else { throw CtlFailure(ChannelNames.errorText("Group")) }
        let (reader, connection) = try await redis.reader()
        let members = try await RedisCall.run { () throws(RedisError) in try await reader.members(of: group) }.filter(\.present)
        await connection.close()
        if redis.json {
            Output.json(.array(members.map {
                Output.object([
                    "channel": .string($0.channel), "node": .string($0.node ?? "-"), "user": $0.user.map { .string($0) } ?? .null,
                    "info": $0.info ?? .null, "joined_at": .double($0.joinedAt),
                ])
            }))
        } else {
            Output.table(["CHANNEL", "NODE", "USER", "JOINED (UTC)"], members.map { [$0.channel, $0.node ?? "-", $0.user ?? "-", Output.time($0.joinedAt)] })
        }
    }
}

/// `channels-ctl nodes`
struct NodesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nodes", abstract: "List nodes: alive or stale (no heartbeat within the registry TTL), and their connections."
    )

    @OptionGroup var redis: RedisOptions

    func run() async throws {
        let (reader, connection) = try await redis.reader()
        let nodes = try await RedisCall.run { () throws(RedisError) in try await reader.nodes() }
        await connection.close()
        let now = WallClock.now()
        if redis.json {
            var rows: [MessageValue] = []
            for node in nodes {
                var row = OrderedDictionary<String, MessageValue>()
                row["node"] = .string(node.id)
                row["status"] = .string(node.alive ? "alive" : "stale")
                row["last_heartbeat"] = .double(node.lastHeartbeat)
                row["connections"] = node.connections.map { MessageValue.int(Int64($0)) } ?? .null
                row["channels"] = node.channels.map { MessageValue.int(Int64($0)) } ?? .null
                row["groups"] = node.groups.map { MessageValue.int(Int64($0)) } ?? .null
                rows.append(.map(row))
            }
            Output.json(.array(rows))
        } else {
            var rows: [[String]] = []
            for node in nodes {
                let age = Int(max(0, now - node.lastHeartbeat))
                rows.append([
                    node.id, node.alive ? "alive" : "stale", node.connections.map { String($0) } ?? "-",
                    node.groups.map { String($0) } ?? "-", "\(age)s ago",
                ])
            }
            Output.table(["NODE", "STATUS", "CONNECTIONS", "GROUPS", "LAST HEARTBEAT"], rows)
        }
    }
}

/// `channels-ctl stats`
struct StatsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "stats", abstract: "Totals: nodes, connections, groups, members, Redis.")

    @OptionGroup var redis: RedisOptions

    func run() async throws {
        let (reader, connection) = try await redis.reader()
        let nodes = try await RedisCall.run { () throws(RedisError) in try await reader.nodes() }
        let groups = try await RedisCall.run { () throws(RedisError) in try await reader.groups() }
        let info = try await RedisCall.run { () throws(RedisError) in try await connection.send("INFO").string ?? "" }
        await connection.close()
        func infoValue(_ name: String) -> String {
            for line in info.split(whereSeparator: \.isNewline) where line.hasPrefix(name + ":") {
                return String(line.dropFirst(name.count + 1))
            }
            return "?"
        }
        let alive = nodes.filter(\.alive)
        let connections = alive.compactMap(\.connections).reduce(0, +)
        let members = groups.map(\.members).reduce(0, +)
        var values = OrderedDictionary<String, MessageValue>()
        values["nodes_alive"] = .int(Int64(alive.count))
        values["nodes_stale"] = .int(Int64(nodes.count - alive.count))
        values["connections"] = .int(Int64(connections))
        values["groups"] = .int(Int64(groups.count))
        values["members"] = .int(Int64(members))
        values["redis_version"] = .string(infoValue("redis_version"))
        values["redis_connected_clients"] = .string(infoValue("connected_clients"))
        values["redis_pubsub_channels"] = .string(infoValue("pubsub_channels"))
        values["redis_used_memory"] = .string(infoValue("used_memory_human"))
        if redis.json {
            Output.json(.map(values))
        } else {
            let rows: [[String]] = values.map { name, value in [name, value.string ?? value.int.map { String($0) } ?? "-"] }
            Output.table(["STAT", "VALUE"], rows)
        }
    }
}

/// Turns a typed Redis failure into a CLI failure.
enum RedisCall {
    static func run<T>(_ operation: () async throws(RedisError) -> T) async throws(CtlFailure) -> T {
        do {
            return try await operation()
        } catch {
            throw CtlFailure(error.message)
        }
    }
}
