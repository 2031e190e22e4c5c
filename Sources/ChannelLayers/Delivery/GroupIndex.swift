import NIOCore

/// A layer's local group members that take pushed messages, grouped by the event loop they live on, so a
/// group message needs one lookup and one hop per loop.
///
/// Copy-on-write: ``members(of:)`` hands out a snapshot without copying the members.
package struct GroupIndex: Sendable {
    package struct LoopMembers: Sendable {
        package let eventLoop: any EventLoop
        package var inboxes: [any ChannelInbox]
    }

    private var groups: [String: [LoopMembers]] = [:]

    package init() {}

    /// The group's local inboxes by event loop (empty when none).
    package func members(of group: String) -> [LoopMembers] { groups[group] ?? [] }

    /// Adds an inbox to a group; does nothing when it is a member already.
    package mutating func add(_ inbox: any ChannelInbox, to group: String) {
        let loop = ObjectIdentifier(inbox.eventLoop)
        // Mutated in place: copying a 10,000-member array on each join or leave made a room's teardown quadratic.
        if let index = groups[group]?.firstIndex(where: { ObjectIdentifier($0.eventLoop) == loop }) {
            guard !groups[group]![index].inboxes.contains(where: { $0 === inbox }) else { return }
            groups[group]![index].inboxes.append(inbox)
        } else {
            groups[group, default: []].append(LoopMembers(eventLoop: inbox.eventLoop, inboxes: [inbox]))
        }
    }

    /// Removes an inbox from a group (the order of the others may change).
    package mutating func remove(_ inbox: any ChannelInbox, from group: String) {
        let loop = ObjectIdentifier(inbox.eventLoop)
        guard let index = groups[group]?.firstIndex(where: { ObjectIdentifier($0.eventLoop) == loop }),
            let position = groups[group]![index].inboxes.firstIndex(where: { $0 === inbox })
        else { return }
        let last = groups[group]![index].inboxes.count - 1
        groups[group]![index].inboxes.swapAt(position, last)
        groups[group]![index].inboxes.removeLast()
        if groups[group]![index].inboxes.isEmpty {
            groups[group]!.remove(at: index)
            if groups[group]!.isEmpty { groups[group] = nil }
        }
    }

    package mutating func removeAll() { groups = [:] }

    /// Inboxes grouped by the event loop they live on, for one dispatch.
    package static func byEventLoop(_ inboxes: [any ChannelInbox]) -> [LoopMembers] {
        var members: [LoopMembers] = []
        for inbox in inboxes {
            if let index = members.firstIndex(where: { $0.eventLoop === inbox.eventLoop }) {
                members[index].inboxes.append(inbox)
            } else {
                members.append(LoopMembers(eventLoop: inbox.eventLoop, inboxes: [inbox]))
            }
        }
        return members
    }
}
