import Foundation
import HiredisClient

/// A real Redis Cluster on loopback: `primaries` primaries with `replicas` replicas each, formed with
/// `redis-cli --cluster create`, and the operations tests do to it (kill a primary, reshard slots).
public final class RedisClusterServers: Sendable {
    public let servers: [RedisServer]

    /// `127.0.0.1:PORT` of every node, as `--redis-cluster` takes seeds.
    public var seeds: [String] { servers.map { "127.0.0.1:\($0.port)" } }

    private init(servers: [RedisServer]) { self.servers = servers }

    /// Starts the nodes (ports below 55535: the cluster bus listens on port + 10000) and creates the cluster.
    public static func start(primaries: Int = 3, replicas: Int = 1, nodeTimeout: Duration = .seconds(2)) async throws -> RedisClusterServers {
        let count = primaries * (1 + replicas)
        var base = 0
        for _ in 0..<20 {
            let candidate = try freeConsecutivePorts(count)
            // The bus ports must be free too.
            if candidate + 10_000 + count < 55_536, (try? freeConsecutivePorts(count, startingAt: candidate + 10_000)) != nil {
                base = candidate
                break
            }
        }
        guard base > 0 else { throw TestSupportError("no free ports for a Redis Cluster and its bus") }
        var servers: [RedisServer] = []
        for port in base..<base + count {
            servers.append(
                try await RedisServer.start(
                    port: port,
                    arguments: [
                        "--cluster-enabled", "yes", "--cluster-config-file", "nodes-\(port).conf",
                        "--cluster-node-timeout", String(Int(nodeTimeout / .milliseconds(1))),
                        // A replica takes over however long it was cut off (tests kill primaries at will).
                        "--cluster-replica-validity-factor", "0", "--cluster-require-full-coverage", "no",
                    ]
                )
            )
        }
        let cluster = RedisClusterServers(servers: servers)
        let created = try await run(
            try RedisServer.findExecutable("redis-cli"),
            ["--cluster", "create"] + cluster.seeds + ["--cluster-replicas", String(replicas), "--cluster-yes"], environment: [:]
        )
        guard created.status == 0 else { throw TestSupportError("redis-cli --cluster create failed:\n\(created.output)") }
        try await cluster.waitUntilHealthy()
        return cluster
    }

    /// Waits until every live node says `cluster_state:ok` and every slot has a primary.
    public func waitUntilHealthy(timeout: Duration = .seconds(30)) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if await isHealthy() { return }
            try await Task.sleep(for: .milliseconds(200))
        }
        throw TestSupportError("the Redis Cluster did not become healthy within \(timeout)")
    }

    private func isHealthy() async -> Bool {
        var answered = 0
        for server in servers {
            guard let connection = try? await RedisConnection.connect(configuration: server.configuration(connectTimeout: .milliseconds(300))) else { continue }
            defer { Task { await connection.close() } }
            guard let info = try? await connection.send("CLUSTER", "INFO").string, info.contains("cluster_state:ok"),
                let slots = try? RedisClusterTopology(slotsReply: try await connection.send("CLUSTER", "SLOTS")), slots.isComplete
            else { return false }
            answered += 1
        }
        return answered > 0
    }

    /// The live server that is the primary of `key`'s slot now.
    public func primary(for key: String) async throws -> RedisServer {
        for server in servers {
            guard let connection = try? await RedisConnection.connect(configuration: server.configuration(connectTimeout: .milliseconds(300))) else { continue }
            defer { Task { await connection.close() } }
            let topology = try RedisClusterTopology(slotsReply: try await connection.send("CLUSTER", "SLOTS"))
            guard let node = topology.primary(for: key) else { continue }
            if let server = servers.first(where: { $0.port == node.port }) { return server }
        }
        throw TestSupportError("no live node names a primary for \(key)")
    }

    /// The server's cluster node id.
    public func nodeID(of server: RedisServer) async throws -> String {
        let connection = try await RedisConnection.connect(configuration: server.configuration())
        defer { Task { await connection.close() } }
        guard let id = try await connection.send("CLUSTER", "MYID").string else { throw TestSupportError("CLUSTER MYID gave nothing") }
        return id
    }

    /// Moves `slots` slots from one primary to another with `redis-cli --cluster reshard`, as an operator would.
    public func reshard(slots: Int, from source: RedisServer, to target: RedisServer) async throws {
        let result = try await run(
            try RedisServer.findExecutable("redis-cli"),
            [
                "--cluster", "reshard", "127.0.0.1:\(target.port)", "--cluster-from", try await nodeID(of: source),
                "--cluster-to", try await nodeID(of: target), "--cluster-slots", String(slots), "--cluster-yes",
            ],
            environment: [:]
        )
        guard result.status == 0 else { throw TestSupportError("redis-cli --cluster reshard failed:\n\(result.output)") }
    }
}
