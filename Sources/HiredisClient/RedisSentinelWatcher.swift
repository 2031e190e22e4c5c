import Logging
import NIOCore

/// Closes a connection to a sentinel-named master when the sentinels announce `+switch-master` for it.
///
/// A master that dies takes its connections with it, and reconnecting asks the sentinels again; that is the
/// main mechanism. The watcher covers the master that is demoted while it lives (a network partition, a
/// manual `SENTINEL FAILOVER`): its connections would stay up and go on reading from a replica. One watcher
/// runs per master connection, on a pub/sub connection of its own to one sentinel (the next one when that
/// sentinel goes away), and ends with the master connection.
enum RedisSentinelWatcher {
    static func start(
        watching connection: RedisConnection,
        host: String,
        port: Int,
        sentinel: RedisConfiguration.Sentinel,
        firstSentinel: Int,
        configuration: @escaping @Sendable (RedisConfiguration.Sentinel.Endpoint) -> RedisConfiguration,
        eventLoopGroup: any EventLoopGroup,
        logger: Logger
    ) {
        let master = connection.channel
        let masterName = sentinel.masterName
        let onSwitch: @Sendable (String, Int) -> Void = { newHost, newPort in
            guard newHost != host || newPort != port else { return }
            logger.info(
                "sentinels moved the master; reconnecting",
                metadata: ["master": "\(masterName)", "from": "\(RedisConfiguration.Address.tcp(host: host, port: port))",
                           "to": "\(RedisConfiguration.Address.tcp(host: newHost, port: newPort))"]
            )
            master.pipeline.fireErrorCaught(
                RedisError(
                    .connectionClosed,
                    "the sentinels moved master '\(masterName)' from \(RedisConfiguration.Address.tcp(host: host, port: port)) to \(RedisConfiguration.Address.tcp(host: newHost, port: newPort)); reconnecting"
                )
            )
        }
        let task = Task {
            var index = firstSentinel
            var failures = 0
            while !Task.isCancelled {
                let endpoint = sentinel.endpoints[index % sentinel.endpoints.count]
                do throws(RedisError) {
                    let watch = try await RedisConnection.connect(
                        configuration: configuration(endpoint),
                        server: .tcp(host: endpoint.host, port: endpoint.port),
                        eventLoopGroup: eventLoopGroup,
                        logger: logger
                    )
                    try await watch.becomeSubscriber { RedisSentinelSwitchHandler(masterName: masterName, onSwitch: onSwitch) }
                    watch.channel.writeAndFlush(RedisCommand("SUBSCRIBE", "+switch-master").encoded, promise: nil)
                    failures = 0
                    await withTaskCancellationHandler {
                        await watch.closed()
                    } onCancel: {
                        watch.channel.close(promise: nil)
                    }
                } catch {
                    logger.debug("cannot watch sentinel for +switch-master", metadata: ["sentinel": "\(endpoint)", "error": "\(error.message)"])
                }
                if Task.isCancelled { break }
                index += 1
                failures += 1
                try? await Task.sleep(for: .milliseconds(min(2000, 100 * failures)))
            }
        }
        master.closeFuture.whenComplete { _ in task.cancel() }
    }
}
