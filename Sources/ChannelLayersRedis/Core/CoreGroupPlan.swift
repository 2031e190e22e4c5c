import ChannelLayers
import ChannelsProtocol
import HiredisClient
import Synchronization

/// Where a group message goes, worked out from one listing of the group's members: one write per host holding
/// receiving processes' queues, one body per process naming its members.
///
/// A group's listing stays the same, byte for byte, from message to message until someone joins or leaves.
/// Splitting 100 names into processes and encoding each process's list again for every message was a third of
/// a sending node's CPU in a room of 100 (core S1), so a plan is kept per group and used while the listing
/// matches; it depends on nothing else that changes.
struct CoreGroupPlan: Sendable {
    struct HostWrite: Sendable {
        let host: Int
        let queueKeys: [String]
        let missedKeys: [String]
        /// Each process's members, msgpack-encoded as `__asgi_channel__` holds them.
        let channelLists: [[UInt8]]
        let capacities: [Int]
    }

    /// The listing this plan was made from.
    let members: [RedisReply]
    /// In host order.
    let writes: [HostWrite]

    /// - Parameters:
    ///   - prefix: the layer's key prefix.
    ///   - hostCount: how many hosts the layer shards over.
    ///   - capacity: a process queue's capacity, from one of its channels.
    init(members: [RedisReply], prefix: String, hostCount: Int, capacity: (String) -> Int) {
        self.members = members
        // A process's members mostly follow one another (they joined together): a run of members of one process
        // is gathered without hashing anything, and added to its bucket when it ends.
        var buckets: [String: [MessageValue]] = [:]
        var order: [String] = []
        var run: (nonLocal: String, queue: String) = ("", "")
        var runMembers: [MessageValue] = []
        func endRun() {
            guard !runMembers.isEmpty else { return }
            if buckets[run.queue] == nil { order.append(run.queue) }
            buckets[run.queue, default: []].append(contentsOf: runMembers)
            runMembers.removeAll(keepingCapacity: true)
        }
        for member in members {
            guard let channel = member.string else { continue }
            if runMembers.isEmpty || !CoreWire.isLocal(channel, of: run.nonLocal) {
                endRun()
                let nonLocal = String(CoreWire.nonLocalName(channel))
                run = (nonLocal, prefix + nonLocal)
            }
            runMembers.append(.string(channel))
        }
        endRun()
        var byHost: [Int: [String]] = [:]
        for queue in order {
            byHost[ShardRing.index(of: String(queue.dropFirst(prefix.count)), hostCount: hostCount), default: []].append(queue)
        }
        writes = byHost.sorted { $0.key < $1.key }.map { host, queueKeys in
            HostWrite(
                host: host, queueKeys: queueKeys, missedKeys: queueKeys.map { CoreWire.missedKey(queue: $0) },
                channelLists: queueKeys.map { MessagePack.encode(.array(buckets[$0]!)) },
                capacities: queueKeys.map { capacity(buckets[$0]![0].string!) }
            )
        }
    }
}

/// The latest ``CoreGroupPlan`` of each group a layer sends to.
final class CoreGroupPlans: Sendable {
    /// The most groups kept; past it the cache starts over, as a node sending to that many groups does not
    /// send to each often enough for a plan to pay.
    let capacity: Int
    private let plans = Mutex<[String: CoreGroupPlan]>([:])

    init(capacity: Int = 4096) {
        self.capacity = capacity
    }

    /// The plan for `group`'s `members`: the kept one when it was made from the same listing, else a new one,
    /// kept.
    func plan(for group: String, members: [RedisReply], make: () -> CoreGroupPlan) -> CoreGroupPlan {
        if let kept = plans.withLock({ $0[group] }), kept.members == members { return kept }
        let plan = make()
        plans.withLock { plans in
            if plans.count >= capacity, plans[group] == nil { plans.removeAll(keepingCapacity: true) }
            plans[group] = plan
        }
        return plan
    }
}
