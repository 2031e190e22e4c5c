import ChannelLayers
import ChannelsProtocol
import DequeModule

/// Which `__offset`/`__epoch` pairs a node trusts, per history group: only those the history script assigned.
///
/// Anyone who can publish on a group's Redis channel (a Django app, `redis-cli`) can put `__offset` keys in
/// a message, and one offset far ahead would make every recovering client skip the real ones. The script
/// publishes each group's messages in offset order, so a node that saw offset `n` of an epoch trusts `n + 1`
/// of the same epoch as it comes. Anything else (the first message after subscribing, a gap after a lost
/// subscription, a new epoch, a forgery) is checked against the history itself: the message is trusted when
/// the group's stream holds the same bytes at that offset. While a group's message is being checked, the
/// group's later messages wait behind it, so members still get them in order.
///
/// No I/O here: the layer asks Redis and reports back with ``verified(group:genuine:)``.
struct HistoryPositionCheck {
    /// A message of a group and what it claims.
    struct Item {
        let message: Message
        let claimed: HistoryPosition?
        /// The payload as published, compared with what the stream holds.
        let payload: [UInt8]
    }

    enum Admission {
        /// Deliver now, with this position (`nil`: as a message outside the history).
        case deliver(Message, HistoryPosition?)
        /// Kept until the message ahead of it is checked.
        case held
        /// Check this position against the history, then call ``verified(group:genuine:)``.
        case verify(HistoryPosition, payload: [UInt8])
    }

    struct Release {
        /// Messages to deliver now, in order.
        var deliveries: [(Message, HistoryPosition?)] = []
        /// The next message to check, if one waits.
        var verify: (position: HistoryPosition, payload: [UInt8])?
        /// Messages whose claim the history did not back.
        var untrusted = 0
    }

    private struct GroupState {
        var last: HistoryPosition?
        var verifying = false
        var waiting: Deque<Item> = []
    }

    /// Messages a group may hold while one is checked; past it they are delivered without their claims
    /// rather than held without bound (Redis must be very slow to answer for that).
    let maxWaiting: Int
    private var groups: [String: GroupState] = [:]

    init(maxWaiting: Int = 10_000) {
        self.maxWaiting = maxWaiting
    }

    mutating func admit(_ item: Item, group: String) -> Admission {
        var state = groups[group] ?? GroupState()
        defer { groups[group] = state }
        if state.verifying {
            guard state.waiting.count < maxWaiting else { return .deliver(item.message, nil) }
            state.waiting.append(item)
            return .held
        }
        guard let claimed = item.claimed else { return .deliver(item.message, nil) }
        if Self.follows(claimed, state.last) {
            state.last = claimed
            return .deliver(item.message, claimed)
        }
        state.verifying = true
        state.waiting.append(item)
        return .verify(claimed, payload: item.payload)
    }

    /// The history's answer for the message being checked: releases it (with its position when genuine)
    /// and those behind it, up to the next that needs a check.
    mutating func verified(group: String, genuine: Bool) -> Release {
        var release = Release()
        guard var state = groups[group], state.verifying, let first = state.waiting.popFirst() else { return release }
        if genuine, let claimed = first.claimed {
            state.last = claimed
            release.deliveries.append((first.message, claimed))
        } else {
            release.untrusted += 1
            release.deliveries.append((first.message, nil))
        }
        state.verifying = false
        while let next = state.waiting.first {
            guard let claimed = next.claimed else {
                release.deliveries.append((next.message, nil))
                state.waiting.removeFirst()
                continue
            }
            if Self.follows(claimed, state.last) {
                state.last = claimed
                release.deliveries.append((next.message, claimed))
                state.waiting.removeFirst()
                continue
            }
            state.verifying = true
            release.verify = (claimed, next.payload)
            break
        }
        groups[group] = state.verifying || state.last != nil ? state : nil
        return release
    }

    /// Forgets the last trusted position of `group` (its subscription was lost, or it has no members any
    /// more): its next message is checked. Messages waiting for a check stay.
    mutating func forget(_ group: String) {
        guard var state = groups[group] else { return }
        state.last = nil
        groups[group] = state.verifying ? state : nil
    }

    /// ``forget(_:)`` for every group.
    mutating func forgetAll() {
        for group in Array(groups.keys) { forget(group) }
    }

    /// Whether a group has a check under way.
    func isVerifying(_ group: String) -> Bool { groups[group]?.verifying == true }

    private static func follows(_ claimed: HistoryPosition, _ last: HistoryPosition?) -> Bool {
        guard let last, last.epoch == claimed.epoch, last.offset < Int64.max else { return false }
        return claimed.offset == last.offset + 1
    }
}
