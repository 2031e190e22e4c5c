import ChannelLayers
import ChannelsProtocol
import HiredisClient
import Logging
import NIOCore
import NIOPosix
import Synchronization

extension RedisCoreChannelLayer {
    /// Writes every local membership again, well before `groupExpiry` would purge it.
    func refreshMemberships() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: configuration.membershipRefreshInterval)
            if Task.isCancelled { break }
            await writeMemberships()
        }
    }

    func writeMemberships() async {
        state.withLock { $0.leftDuringRefresh = [] }
        let memberships = local.withMembership { $0.groups.mapValues { Array($0.keys) } }
        let now = String(WallClock.now())
        var byHost: [Int: [RedisCommand]] = [:]
        for (group, channels) in memberships where !channels.isEmpty {
            let key = CoreWire.groupKey(prefix: configuration.prefix, group: group)
            let host = ShardRing.index(of: group, hostCount: clients.count)
            for chunk in stride(from: 0, to: channels.count, by: 1000) {
                let part = channels[chunk..<min(chunk + 1000, channels.count)]
                byHost[host, default: []].append(
                    RedisCommand("ZADD", arguments: [.string(key)] + part.flatMap { [.string(now), .string($0)] as [RedisArgument] })
                )
            }
            byHost[host, default: []].append(RedisCommand("EXPIRE", .string(key), .integer(groupExpirySeconds)))
        }
        for (host, commands) in byHost {
            do {
                _ = try await clients[host].pipeline(commands).checked("writing memberships")
            } catch {
                logger.warning("could not write memberships again; retrying at the next refresh", metadata: ["error": "\(error.message)"])
            }
        }
        // A member that left while its membership was being written must not stay in Redis.
        let left = state.withLock { state in
            defer { state.leftDuringRefresh = nil }
            return state.leftDuringRefresh ?? []
        }
        await removeFromRedis(left)
    }

    /// Takes `channel` out of `groups` locally and in the registry.
    func forget(_ groups: some Collection<String>, channel: String) {
        let left = local.withMembership { membership in
            _ = membership.removePresence(of: channel, in: groups)
            return groups.filter { membership.leave($0, channel: channel).wasMember }
        }
        state.withLock { state in
            for group in left { state.leftDuringRefresh?.append((group, channel)) }
        }
        for group in left where isListed(group) { registry?.enqueue(.leave(group: group, channel: channel)) }
    }

    func removeFromRedis(_ memberships: [(group: String, channel: String)]) async {
        var byHost: [Int: [RedisCommand]] = [:]
        for (group, channel) in memberships {
            byHost[ShardRing.index(of: group, hostCount: clients.count), default: []].append(
                RedisCommand("ZREM", .string(CoreWire.groupKey(prefix: configuration.prefix, group: group)), .string(channel))
            )
        }
        for (host, commands) in byHost {
            do {
                _ = try await clients[host].pipeline(commands).checked("removing memberships")
            } catch {
                logger.warning(
                    "could not remove memberships from Redis; Django's group_send skips them once they expire",
                    metadata: ["error": "\(error.message)", "count": "\(commands.count)"]
                )
            }
        }
    }
}
