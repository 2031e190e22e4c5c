import NIOCore

/// A layer's local group members that take pushed messages, grouped by the event loop they live on, so a
/// group message needs one lookup and one hop per loop.
///
/// Joining and leaving cost O(1) whatever the group's size (each loop's members keep their positions by
/// identity), so a 100,000-member room fills and empties in linear time. Copy-on-write: ``members(of:)``
/// hands out a snapshot without copying the members.
package struct GroupIndex: Sendable {
    package struct LoopMembers: Sendable {
        package let eventLoop: any EventLoop
        package fileprivate(set) var inboxes: [any ChannelInbox]
        /// Where each inbox stands in ``inboxes``.
        fileprivate var positions: [ObjectIdentifier: Int]

        package init(eventLoop: any EventLoop, inboxes: [any ChannelInbox]) {
            self.eventLoop = eventLoop
            self.inboxes = inboxes
            self.positions = Dictionary(inboxes.enumerated().map { (ObjectIdentifier($0.element), $0.offset) }, uniquingKeysWith: { first, _ in first })
        }
    }

    /// Per group, its members on each event loop (a handful of loops: found by a short scan).
    private var groups: [String: [LoopMembers]] = [:]
    /// The same for the members that take presence events (``ChannelInbox/takesPresenceEvents``), so that a
    /// join or leave costs what its listeners cost, not a call on every member: a room of 10,000 filling up
    /// was 50 million calls that each declined the event.
    private var presenceListeners: [String: [LoopMembers]] = [:]

    package init() {}

    /// The group's local inboxes by event loop (empty when none).
    package func members(of group: String) -> [LoopMembers] { groups[group] ?? [] }

    /// The group's local inboxes that take presence events, by event loop (empty when none).
    package func presenceListeners(of group: String) -> [LoopMembers] { presenceListeners[group] ?? [] }

    /// How many local inboxes a group has.
    package func count(of group: String) -> Int { groups[group]?.reduce(0) { $0 + $1.inboxes.count } ?? 0 }

    /// Adds an inbox to a group; does nothing when it is a member already.
    package mutating func add(_ inbox: any ChannelInbox, to group: String) {
        guard Self.add(inbox, to: group, in: &groups) else { return }
        if inbox.takesPresenceEvents { Self.add(inbox, to: group, in: &presenceListeners) }
    }

    /// Removes an inbox from a group (the order of the others may change).
    package mutating func remove(_ inbox: any ChannelInbox, from group: String) {
        guard Self.remove(inbox, from: group, in: &groups) else { return }
        if inbox.takesPresenceEvents { Self.remove(inbox, from: group, in: &presenceListeners) }
    }

    package mutating func removeAll() {
        groups = [:]
        presenceListeners = [:]
    }

    /// Whether the inbox was not in the group yet.
    @discardableResult
    private static func add(_ inbox: any ChannelInbox, to group: String, in groups: inout [String: [LoopMembers]]) -> Bool {
        let loop = ObjectIdentifier(inbox.eventLoop)
        let key = ObjectIdentifier(inbox)
        // Mutated in place: copying a 10,000-member array on each join or leave made a room's teardown quadratic.
        if let index = groups[group]?.firstIndex(where: { ObjectIdentifier($0.eventLoop) == loop }) {
            guard groups[group]![index].positions[key] == nil else { return false }
            groups[group]![index].positions[key] = groups[group]![index].inboxes.count
            groups[group]![index].inboxes.append(inbox)
        } else {
            groups[group, default: []].append(LoopMembers(eventLoop: inbox.eventLoop, inboxes: [inbox]))
        }
        return true
    }

    /// Whether the inbox was in the group.
    @discardableResult
    private static func remove(_ inbox: any ChannelInbox, from group: String, in groups: inout [String: [LoopMembers]]) -> Bool {
        let loop = ObjectIdentifier(inbox.eventLoop)
        let key = ObjectIdentifier(inbox)
        guard let index = groups[group]?.firstIndex(where: { ObjectIdentifier($0.eventLoop) == loop }),
            let position = groups[group]![index].positions.removeValue(forKey: key)
        else { return false }
        let last = groups[group]![index].inboxes.count - 1
        if position != last {
            groups[group]![index].inboxes.swapAt(position, last)
            groups[group]![index].positions[ObjectIdentifier(groups[group]![index].inboxes[position])] = position
        }
        groups[group]![index].inboxes.removeLast()
        if groups[group]![index].inboxes.isEmpty {
            groups[group]!.remove(at: index)
            if groups[group]!.isEmpty { groups[group] = nil }
        }
        return true
    }

    /// Inboxes grouped by the event loop they live on, for one dispatch.
    package static func byEventLoop(_ inboxes: [any ChannelInbox]) -> [LoopMembers] {
        var byLoop: [ObjectIdentifier: [any ChannelInbox]] = [:]
        var loops: [any EventLoop] = []
        for inbox in inboxes {
            let key = ObjectIdentifier(inbox.eventLoop)
            if byLoop[key] == nil { loops.append(inbox.eventLoop) }
            byLoop[key, default: []].append(inbox)
        }
        return loops.map { LoopMembers(eventLoop: $0, inboxes: byLoop[ObjectIdentifier($0)]!) }
    }
}
