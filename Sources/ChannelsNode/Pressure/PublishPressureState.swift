/// Which groups' publishers wait, without I/O: groups with a member on this node that fell behind reading
/// (its outbound buffer past the soft mark, within its grace), and groups other nodes said the same of.
///
/// A group lags here from its first member that falls behind until its last one catches up or uses up its
/// grace; every change of that is an announcement for the other nodes, who hold it for a time to live unless
/// it is repeated, so a node that dies mid-lag slows nobody for long.
struct PublishPressureState {
    typealias Instant = ContinuousClock.Instant

    /// Members here that fell behind, by group (only groups with one or more).
    private(set) var behind: [String: Int] = [:]
    /// Groups other nodes reported lagging: node by node, until when.
    private var remote: [String: [String: Instant]] = [:]
    /// Changes of the local lag not announced yet: `true` started lagging, `false` caught up.
    private var unannounced: [String: Bool] = [:]

    /// Groups lagging here plus entries heard from other nodes (expired ones included until looked at):
    /// zero means no publisher needs to look further.
    var activeEntries: Int { behind.count + remoteEntries }
    private var remoteEntries = 0

    /// A member of `groups` fell behind.
    mutating func fellBehind(_ groups: some Sequence<String>) {
        for group in groups {
            let count = behind[group, default: 0]
            behind[group] = count + 1
            if count == 0 { changed(group, lagging: true) }
        }
    }

    /// A member of `groups` that had fallen behind caught up, left, or used up its grace.
    mutating func caughtUp(_ groups: some Sequence<String>) {
        for group in groups {
            guard let count = behind[group] else { continue }
            if count > 1 {
                behind[group] = count - 1
            } else {
                behind[group] = nil
                changed(group, lagging: false)
            }
        }
    }

    private mutating func changed(_ group: String, lagging: Bool) {
        // Lagging and back within one announcement period: the others never heard of it, nothing to say.
        if let pending = unannounced[group], pending != lagging {
            unannounced[group] = nil
        } else {
            unannounced[group] = lagging
        }
    }

    /// What to tell the other nodes now: groups that started lagging, and groups that caught up.
    mutating func takeAnnouncement() -> (lagging: [String], caughtUp: [String]) {
        defer { unannounced = [:] }
        var lagging: [String] = []
        var caughtUp: [String] = []
        for (group, isLagging) in unannounced {
            if isLagging { lagging.append(group) } else { caughtUp.append(group) }
        }
        return (lagging.sorted(), caughtUp.sorted())
    }

    /// Another node's announcement.
    mutating func heard(from node: String, lagging: [String], caughtUp: [String], until: Instant) {
        for group in lagging {
            if remote[group, default: [:]].updateValue(until, forKey: node) == nil { remoteEntries += 1 }
        }
        for group in caughtUp {
            guard remote[group]?.removeValue(forKey: node) != nil else { continue }
            remoteEntries -= 1
            if remote[group]?.isEmpty == true { remote[group] = nil }
        }
    }

    /// Whether a publisher into `group` waits at `now`; forgets the other nodes' entries past their time.
    mutating func isLagging(_ group: String, now: Instant) -> Bool {
        if behind[group] != nil { return true }
        return forgetExpired(group, now: now)
    }

    /// Drops `group`'s entries from other nodes that are past their time; whether any is left.
    private mutating func forgetExpired(_ group: String, now: Instant) -> Bool {
        guard let nodes = remote[group] else { return false }
        let live = nodes.filter { $0.value > now }
        remoteEntries -= nodes.count - live.count
        remote[group] = live.isEmpty ? nil : live
        return !live.isEmpty
    }

    /// Forgets every entry heard from other nodes that is past its time.
    mutating func expire(now: Instant) {
        for group in Array(remote.keys) { _ = forgetExpired(group, now: now) }
    }
}
