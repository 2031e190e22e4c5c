import ChannelLayers
import Testing

@testable import ChannelLayersRedis

/// What the core layer's receiver resolves from a message's list of channels, and how long it keeps it.
@Suite struct CoreTargetCacheTests {
    func hit(_ cache: inout CoreTargetCache, _ list: [UInt8], _ generation: UInt64) -> Bool {
        cache.targets(for: list, generation: generation) != nil
    }

    @Test func aListResolvesToEachInboxOnceAndEachOtherNameOnce() {
        let first = KeepingInbox()
        let second = KeepingInbox()
        let targets = CoreTargets(
            channels: ["specific.a!1", "specific.a!gone", "specific.a!2", "specific.a!1", "specific.a!gone"],
            inboxes: ["specific.a!1": first, "specific.a!2": second]
        )
        let pushed = targets.pushed.flatMap(\.inboxes).map(ObjectIdentifier.init)
        #expect(pushed.count == 2)
        #expect(Set(pushed) == [ObjectIdentifier(first), ObjectIdentifier(second)])
        #expect(targets.queued == ["specific.a!gone"])
        #expect(CoreTargets(channels: [], inboxes: ["specific.a!1": first]).pushed.isEmpty)
    }

    @Test func entriesHoldWhileTheInboxesStayAsTheyWere() {
        var cache = CoreTargetCache(capacity: 2)
        let inbox = KeepingInbox()
        let list: [UInt8] = [0x91, 0xa1, 0x61]
        #expect(!hit(&cache, list, 7))
        cache.store(CoreTargets(channels: ["a"], inboxes: ["a": inbox]), for: list, generation: 7)
        #expect(cache.targets(for: list, generation: 7)?.pushed.first?.inboxes.first === inbox)
        #expect(!hit(&cache, [0x91, 0xa1, 0x62], 7))
        // An inbox came or went: everything resolved before is dropped, not only the entry asked for.
        #expect(!hit(&cache, list, 8))
        #expect(cache.count == 0)
        #expect(!hit(&cache, list, 7))
    }

    @Test func aFullCacheStartsAfresh() {
        var cache = CoreTargetCache(capacity: 2)
        for byte: UInt8 in 0..<3 { cache.store(CoreTargets(channels: [], inboxes: [:]), for: [byte], generation: 1) }
        #expect(cache.count == 1)
        #expect(hit(&cache, [2], 1))
        #expect(!hit(&cache, [0], 1))
        cache.update(to: 1)
        #expect(cache.count == 1)
        cache.update(to: 2)
        #expect(cache.count == 0)
    }
}
