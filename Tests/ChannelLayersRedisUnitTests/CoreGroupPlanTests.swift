import ChannelsProtocol
import HiredisClient
import Testing

@testable import ChannelLayersRedis

/// How a core group send splits a listing into process queues, and when a kept plan is used again.
struct CoreGroupPlanTests {
    static func listing(_ names: [String]) -> [RedisReply] { names.map { .bulkString(Array($0.utf8)) } }

    @Test func oneBodyPerProcessNamingItsMembersInListingOrder() throws {
        let members = Self.listing(["specific.a!1", "specific.a!2", "specific.b!1", "specific.a!3", "chat.worker"])
        let plan = CoreGroupPlan(members: members, prefix: "asgi", hostCount: 1) { $0.hasPrefix("specific.") ? 10_000 : 100 }
        let write = try #require(plan.writes.first)
        #expect(plan.writes.count == 1 && write.host == 0)
        #expect(write.queueKeys == ["asgispecific.a!", "asgispecific.b!", "asgichat.worker"])
        #expect(write.missedKeys == write.queueKeys.map { $0 + "$missed" })
        #expect(write.capacities == [10_000, 10_000, 100])
        let lists = try write.channelLists.map { try MessagePack.decode($0) }
        #expect(lists == [
            .array([.string("specific.a!1"), .string("specific.a!2"), .string("specific.a!3")]),
            .array([.string("specific.b!1")]),
            .array([.string("chat.worker")]),
        ])
    }

    @Test func processesAreWrittenOnTheHostTheirQueueLivesOn() {
        let names = (0..<40).map { "specific.p\($0)!x" }
        let plan = CoreGroupPlan(members: Self.listing(names), prefix: "asgi", hostCount: 3) { _ in 100 }
        #expect(plan.writes.map(\.host) == plan.writes.map(\.host).sorted())
        for write in plan.writes {
            for key in write.queueKeys {
                #expect(ShardRing.index(of: String(key.dropFirst("asgi".count)), hostCount: 3) == write.host)
            }
        }
        #expect(plan.writes.flatMap(\.queueKeys).count == 40)
    }

    @Test func aKeptPlanServesTheSameListingOnly() {
        let plans = CoreGroupPlans(capacity: 2)
        var made = 0
        func plan(_ group: String, _ names: [String]) -> CoreGroupPlan {
            let members = Self.listing(names)
            return plans.plan(for: group, members: members) {
                made += 1
                return CoreGroupPlan(members: members, prefix: "asgi", hostCount: 1) { _ in 100 }
            }
        }
        _ = plan("chat", ["specific.a!1"])
        _ = plan("chat", ["specific.a!1"])
        #expect(made == 1)
        let changed = plan("chat", ["specific.a!1", "specific.a!2"])
        #expect(made == 2 && changed.writes.first?.channelLists.count == 1)
        _ = plan("other", ["specific.a!1"])
        _ = plan("third", ["specific.a!1"])
        _ = plan("chat", ["specific.a!1", "specific.a!2"])
        #expect(made == 5, "past its capacity the cache starts over")
    }
}
