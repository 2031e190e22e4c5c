import ChannelLayers
import ChannelsProtocol

/// A Redis layer's channels and group memberships in this process: who to hand a group's message to, what
/// to write to the registry, who is present where. Both Redis layers keep one behind their lock.
struct LocalMembership {
    /// group -> local member -> join time (Unix seconds).
    private(set) var groups: [String: [String: Double]] = [:]
    private var groupsOfChannel: [String: SmallSet<String>] = [:]
    /// Channels whose messages are pushed to an inbox, and the groups' pushed members by event loop.
    private(set) var inboxes: [String: any ChannelInbox] = [:]
    private(set) var pushed = GroupIndex()
    /// group -> local members that are queues (receive()), not inboxes.
    private(set) var queuedMembers: [String: Set<String>] = [:]
    /// Who each channel that joined a group with presence is (absent: anonymous), and those groups.
    private(set) var presence: [String: PresenceInfo] = [:]
    private var presentIn: [String: SmallSet<String>] = [:]
    /// group -> how many local members joined it with presence.
    private(set) var presenceCount: [String: Int] = [:]

    /// The groups `channel` is a member of.
    func groups(of channel: String) -> [String] { groupsOfChannel[channel].map(Array.init) ?? [] }

    /// Changes whenever ``inboxes`` does: what was resolved against them holds while it stays.
    private(set) var inboxGeneration: UInt64 = 0

    mutating func addInbox(_ inbox: any ChannelInbox, for channel: String) {
        inboxes[channel] = inbox
        inboxGeneration &+= 1
    }

    @discardableResult
    mutating func removeInbox(of channel: String) -> (any ChannelInbox)? {
        guard let inbox = inboxes.removeValue(forKey: channel) else { return nil }
        inboxGeneration &+= 1
        return inbox
    }

    /// Adds `channel` to `group`; returns whether it was not a member yet.
    mutating func join(_ group: String, channel: String, at joinedAt: Double) -> Bool {
        groupsOfChannel[channel, default: SmallSet()].insert(group)
        if groups[group]?[channel] != nil { return false }
        if let inbox = inboxes[channel] {
            pushed.add(inbox, to: group)
        } else {
            queuedMembers[group, default: []].insert(channel)
        }
        groups[group, default: [:]][channel] = joinedAt
        return true
    }

    /// Takes `channel` out of `group`: whether it was a member, and whether the group has no local member left.
    mutating func leave(_ group: String, channel: String) -> (wasMember: Bool, groupEmpty: Bool) {
        groupsOfChannel[channel]?.remove(group)
        if groupsOfChannel[channel]?.isEmpty == true { groupsOfChannel[channel] = nil }
        guard groups[group]?.removeValue(forKey: channel) != nil else { return (false, false) }
        if let inbox = inboxes[channel] {
            pushed.remove(inbox, from: group)
        } else {
            queuedMembers[group]?.remove(channel)
            if queuedMembers[group]?.isEmpty == true { queuedMembers[group] = nil }
        }
        if groups[group]!.isEmpty {
            groups[group] = nil
            return (true, true)
        }
        return (true, false)
    }

    /// Records that `channel` is present in `group` as `info`; returns whether it was not yet.
    mutating func addPresence(_ info: PresenceInfo, channel: String, in group: String) -> Bool {
        // Anonymous members (no user, no info) take no entry: most connections of a public room are.
        presence[channel] = info == PresenceInfo() ? nil : info
        let inserted = presentIn[channel, default: SmallSet()].insert(group)
        if inserted { presenceCount[group, default: 0] += 1 }
        return inserted
    }

    /// Takes `channel` out of the presence of `groups`: the groups it left with who it was, and the groups
    /// where no local member is present any more.
    mutating func removePresence(of channel: String, in groups: some Sequence<String>) -> (left: [(group: String, info: PresenceInfo)], emptied: [String]) {
        var left: [(group: String, info: PresenceInfo)] = []
        var emptied: [String] = []
        for group in groups where presentIn[channel]?.remove(group) == true {
            left.append((group, presence[channel] ?? PresenceInfo()))
            presenceCount[group, default: 1] -= 1
            if presenceCount[group]! <= 0 {
                presenceCount[group] = nil
                emptied.append(group)
            }
        }
        if presentIn[channel]?.isEmpty == true {
            presentIn[channel] = nil
            presence[channel] = nil
        }
        return (left, emptied)
    }

    /// Who `channel` is in `group`, when it joined with presence.
    func presence(of channel: String, in group: String) -> PresenceInfo? {
        presentIn[channel]?.contains(group) == true ? presence[channel] ?? PresenceInfo() : nil
    }

    /// The group's local members that joined with presence.
    func presentMembers(of group: String, node: String) -> [PresenceMember] {
        (groups[group] ?? [:]).compactMap { channel, joinedAt in
            guard let info = presence(of: channel, in: group) else { return nil }
            return PresenceMember(channel: channel, node: node, user: info.user, info: info.info, joinedAt: joinedAt)
        }
    }

    /// The registry's view of the listed groups: each member with its registry value.
    func registryMembers(listed isListed: (String) -> Bool) -> [String: [(channel: String, value: String)]] {
        Dictionary(uniqueKeysWithValues: groups.filter { isListed($0.key) }.map { group, members in
            (group, members.map { channel, joinedAt in
                (channel: channel, value: RegistryReader.value(joinedAt: joinedAt, presence: presence(of: channel, in: group)))
            })
        })
    }

    /// Forgets every membership (the inboxes stay: their channels still exist).
    mutating func removeAllMemberships() {
        groups = [:]
        groupsOfChannel = [:]
        pushed.removeAll()
        queuedMembers = [:]
        presence = [:]
        presentIn = [:]
        presenceCount = [:]
    }
}
