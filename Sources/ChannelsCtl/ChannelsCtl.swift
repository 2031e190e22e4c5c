import ArgumentParser
import ChannelLayers
import ChannelLayersRedis
import HiredisClient

/// `channels-ctl`: operator commands against the Redis a swift-channels cluster uses.
@main
struct ChannelsCtl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "channels-ctl",
        abstract: "Inspect and operate the Redis behind a swift-channels cluster.",
        discussion: """
            Reads the membership registry the nodes keep in Redis (see the README) and sends through the \
            channel layer, so Swift nodes and Django consumers both receive. Exits non-zero with a message \
            when Redis is unreachable, JSON is invalid or a name breaks Django's rules. The common options \
            (--redis, --prefix, --layer, --encryption-key-file, --json) go before or after the subcommand.
            """,
        subcommands: [
            GroupsCommand.self, MembersCommand.self, PresenceCommand.self, NodesCommand.self, StatsCommand.self, SendCommand.self,
            SendChannelCommand.self, HistoryCommand.self, DisconnectCommand.self, FlushCommand.self, CheckCommand.self,
        ]
    )

    // Lets the common options come before the subcommand too (`channels-ctl --redis URL groups`): values parsed
    // here land under the same keys the subcommands' `redis` option group reads.
    @OptionGroup(visibility: .hidden) var redis: RedisOptions
}

/// Options every command that talks to Redis shares.
struct RedisOptions: ParsableArguments {
    @Option(
        name: .customLong("redis"),
        help: ArgumentHelp(
            "Redis URL, repeat for shards in the nodes' order: redis://[[user]:password@]host[:port][/db] or unix:///path (default: $CHANNELS_REDIS_URL, comma-separated, or redis://127.0.0.1:6379).",
            valueName: "url"
        )
    )
    var urls: [String] = []

    @Option(
        name: .customLong("redis-cluster"),
        help: ArgumentHelp("A Redis Cluster seed node HOST:PORT, repeatable, instead of --redis (default: $CHANNELS_REDIS_CLUSTER, comma-separated).", valueName: "host:port")
    )
    var clusterSeeds: [String] = []

    @Option(help: "Prefix of the Redis keys and channels (default: $CHANNELS_PREFIX or asgi).")
    var prefix: String?

    @Option(help: "The nodes' layer: pubsub or core, Django's RedisChannelLayer (default: $CHANNELS_LAYER or pubsub).")
    var layer: String?

    @Option(help: "File of symmetric_encryption_keys, one per line, for sending (default: $CHANNELS_SYMMETRIC_ENCRYPTION_KEYS, comma-separated).")
    var encryptionKeyFile: String?

    @Flag(help: "Print JSON instead of a table.")
    var json = false

    var resolvedURLs: [String] {
        if !urls.isEmpty { return urls }
        let fromEnvironment = (ProcessInfo.environment["CHANNELS_REDIS_URL"] ?? "").split(separator: ",").map(String.init).filter { !$0.isEmpty }
        return fromEnvironment.isEmpty ? ["redis://127.0.0.1:6379"] : fromEnvironment
    }

    /// The cluster's seeds, when the nodes run on Redis Cluster.
    var resolvedClusterSeeds: [String] {
        if !clusterSeeds.isEmpty { return clusterSeeds }
        return (ProcessInfo.environment["CHANNELS_REDIS_CLUSTER"] ?? "").split(separator: ",").map(String.init).filter { !$0.isEmpty }
    }

    var resolvedPrefix: String { prefix ?? ProcessInfo.environment["CHANNELS_PREFIX"] ?? "asgi" }

    func resolvedLayer() throws(CtlFailure) -> RedisLayerSettings.Kind {
        do {
            return try RedisLayerSettings.kind(named: layer ?? ProcessInfo.environment["CHANNELS_LAYER"] ?? "pubsub")
        } catch {
            throw CtlFailure(error.message)
        }
    }

    func resolvedEncryptionKeys() throws(CtlFailure) -> [String] {
        do {
            if let encryptionKeyFile { return try RedisLayerSettings.encryptionKeys(fromFile: encryptionKeyFile) }
        } catch {
            throw CtlFailure(error.message)
        }
        return RedisLayerSettings.encryptionKeys(fromList: ProcessInfo.environment["CHANNELS_SYMMETRIC_ENCRYPTION_KEYS"] ?? "")
    }

    /// A host's configuration (by default the first, where the registry lives), with short timeouts for a CLI.
    func configuration(host: Int = 0) throws(CtlFailure) -> RedisConfiguration {
        do {
            var configuration = try RedisConfiguration(url: resolvedURLs[host])
            configuration.connectTimeout = .seconds(3)
            configuration.commandTimeout = .seconds(10)
            return configuration
        } catch {
            throw CtlFailure(error.message)
        }
    }

    /// A connection to a host (by default the first), or to the cluster when the nodes run on one.
    func connect(host: Int = 0) async throws(CtlFailure) -> RedisSession {
        var hosts: [RedisConfiguration]
        let seeds = resolvedClusterSeeds
        if seeds.isEmpty {
            hosts = [try configuration(host: host)]
        } else {
            do { hosts = try RedisClusterClient.seeds(from: seeds) } catch { throw CtlFailure(error.message) }
            for index in hosts.indices {
                hosts[index].connectTimeout = .seconds(3)
                hosts[index].commandTimeout = .seconds(10)
            }
        }
        do throws(RedisError) {
            return try await RedisSession.open(hosts: hosts, clustered: !seeds.isEmpty)
        } catch {
            throw CtlFailure(error.message + defaultHint(error))
        }
    }

    /// Nothing answered at the default address: say where the scripted cluster's Redis is.
    func defaultHint(_ error: RedisError) -> String {
        guard error.code == .connectionRefused, urls.isEmpty, resolvedClusterSeeds.isEmpty,
            (ProcessInfo.environment["CHANNELS_REDIS_URL"] ?? "").isEmpty
        else { return "" }
        return " (channels-ctl defaults to redis://127.0.0.1:6379; the scripted cluster's Redis is redis://127.0.0.1:6390: use scripts/ctl, --redis or CHANNELS_REDIS_URL)"
    }

    /// A registry reader on the first host, or across the cluster.
    func reader() async throws(CtlFailure) -> (RegistryReader, RedisSession) {
        let connection = try await connect()
        return (RegistryReader(connection: connection, prefix: resolvedPrefix), connection)
    }
}

/// A failure reported as `Error: <message>` with exit status 1.
struct CtlFailure: Error, CustomStringConvertible {
    let message: String
    init(_ message: String) { self.message = message }
    var description: String { message }
}

