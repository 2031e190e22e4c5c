import ChannelLayers
import ChannelsProtocol
import HiredisClient
import Logging
import NIOCore
import NIOPosix
import Synchronization

extension RedisPubSubChannelLayer {
    public func groupAdd(_ group: String, channel: String, presence: PresenceInfo) async throws(ChannelLayerError) {
        let isNew = local.withMembership { $0.addPresence(presence, channel: channel, in: group) }
        try await groupAdd(group, channel: channel)
        try await reconciler.want(presenceChannel(group))
        if isNew {
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
        return left.map { ($0.group, PresenceEvent.message("leave", channel: channel, presence: $0.info, node: configuration.nodeID, at: now)) }
    }

    func announce(_ events: [(group: String, event: Message)]) async {
        for (group, event) in events { try? await publish(event, on: presenceChannel(group)) }
    }
}
