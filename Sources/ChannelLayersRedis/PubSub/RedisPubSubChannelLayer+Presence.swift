import ChannelLayers
import ChannelsProtocol
import HiredisClient
import Logging
import NIOCore
import NIOPosix
import OrderedCollections
import Synchronization

extension RedisPubSubChannelLayer {
    public func groupAdd(_ group: String, channel: String, presence: PresenceInfo) async throws(ChannelLayerError) {
        let isNew = local.withMembership { $0.addPresence(presence, channel: channel, in: group) }
        try await groupAdd(group, channel: channel)
        try await reconciler.want(presenceChannel(group))
        if isNew {
            cluster?.presenceAdd(group: group, channel: channel, presence: presence)
            let event = PresenceEvent.message("join", channel: channel, presence: presence, node: configuration.nodeID, at: WallClock.now())
            try? await publish(event, on: presenceChannel(group))
        }
    }

    public func presence(of group: String) async throws(ChannelLayerError) -> [PresenceMember] {
        try LayerValidation.group(group)
        let present = local.withMembership { $0.presentMembers(of: group, node: configuration.nodeID) }
        let reader = registry == nil ? nil : RegistryReader(connection: shards[0].client, prefix: configuration.prefix)
        return try await RegistryReader.presence(of: group, local: present, node: configuration.nodeID, reader: reader)
    }

    /// Takes `channel` out of the presence of `groups`; returns the leave events to send.
    func leavePresence(_ channel: String, groups: some Sequence<String>) -> [(group: String, event: Message)] {
        let now = WallClock.now()
        let (left, emptied) = local.withMembership { $0.removePresence(of: channel, in: groups) }
        // The last local member with presence gone: this node stops listening to the group's events.
        for group in emptied { reconciler.unwant(presenceChannel(group)) }
        for (group, _) in left { cluster?.presenceRemove(group: group, channel: channel) }
        return left.map { ($0.group, PresenceEvent.message("leave", channel: channel, presence: $0.info, node: configuration.nodeID, at: now)) }
    }

    func announce(_ events: [(group: String, event: Message)]) async {
        for (group, event) in events { try? await publish(event, on: presenceChannel(group)) }
    }
}

// MARK: - Users and the cluster's shared state

extension RedisPubSubChannelLayer {
    public func userConnected(_ user: String, limit: Int) async throws(ChannelLayerError) -> UserAdmission {
        guard let cluster else { return .admitted(connections: 1) }
        let count: Int
        do {
            count = try await cluster.userJoin(user, limit: limit)
        } catch {
            throw ChannelLayerError(.unavailable, "could not count the user's connections in Redis (\(error)); connect again")
        }
        return count > 0 ? .admitted(connections: count) : .refused(connections: -count)
    }

    public func userDisconnected(_ user: String) {
        cluster?.userLeave(user)
    }

    public var webhookEvents: (any WebhookEventQueue)? {
        guard let cluster else { return nil }
        return RedisWebhookQueue(client: shards[0].client, base: cluster.base, nodeID: configuration.nodeID)
    }

    /// A dead node's presence members leave their groups: one `leave` each, `"reason": "node_lost"`, sent by
    /// the node that took the dead one out (once across the cluster).
    func announceLost(node: String, members: [(group: String, channel: String, value: String)]) async {
        let now = WallClock.now()
        for member in members {
            var presence = PresenceInfo()
            if case .map(let object)? = try? JSON.parse(member.value) {
                presence.user = object["user"]?.string
                if let info = object["info"], info != .null { presence.info = info }
            }
            var event = PresenceEvent.message("leave", channel: member.channel, presence: presence, node: node, at: now)
            event["reason"] = "node_lost"
            try? await publish(event, on: presenceChannel(member.group))
        }
    }

    /// Lets the cluster state, made before the layer, reach it.
    final class ReapAnnouncer: Sendable {
        let layer = Mutex<RedisPubSubChannelLayer?>(nil)

        func announce(_ node: String, _ members: [(group: String, channel: String, value: String)]) async {
            guard let layer = layer.withLock({ $0 }) else { return }
            await layer.announceLost(node: node, members: members)
        }
    }
}
