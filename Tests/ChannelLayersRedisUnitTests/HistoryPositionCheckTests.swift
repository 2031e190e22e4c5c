import ChannelLayers
import ChannelsProtocol
import Testing

@testable import ChannelLayersRedis

/// Which claimed history positions a node trusts without asking Redis, and the order of what waits.
struct HistoryPositionCheckTests {
    static func item(_ n: Int64, _ offset: Int64?, _ epoch: String = "E") -> HistoryPositionCheck.Item {
        HistoryPositionCheck.Item(
            message: ["type": "m", "n": .int(n)], claimed: offset.map { HistoryPosition(offset: $0, epoch: epoch) }, payload: [UInt8(n & 0xff)]
        )
    }

    static func numbers(_ release: HistoryPositionCheck.Release) -> [Int64?] {
        release.deliveries.map { $0.0["n"]?.int }
    }

    @Test func theFirstPositionIsCheckedAndItsSuccessorsTrusted() {
        var check = HistoryPositionCheck()
        guard case .verify(let position, _) = check.admit(Self.item(1, 7), group: "g") else { Issue.record("not checked"); return }
        #expect(position.offset == 7)
        // Behind the check, in order, whatever they claim.
        for (n, offset) in [(2, Int64(8)), (3, nil), (4, 9)] as [(Int64, Int64?)] {
            guard case .held = check.admit(Self.item(n, offset), group: "g") else { Issue.record("not held"); return }
        }
        let release = check.verified(group: "g", genuine: true)
        #expect(Self.numbers(release) == [1, 2, 3, 4])
        #expect(release.deliveries.map { $0.1?.offset } == [7, 8, nil, 9])
        #expect(release.verify == nil && release.untrusted == 0)
        guard case .deliver(_, let next) = check.admit(Self.item(5, 10), group: "g") else { Issue.record("not trusted"); return }
        #expect(next?.offset == 10)
    }

    @Test func aForgedOffsetIsDeliveredWithoutItAndTheRealOnesGoOn() {
        var check = HistoryPositionCheck()
        _ = check.admit(Self.item(1, 1), group: "g")
        _ = check.verified(group: "g", genuine: true)
        // 9e18 does not follow 1: checked, found forged, delivered bare.
        guard case .verify = check.admit(Self.item(2, 9_000_000_000_000_000_000), group: "g") else { Issue.record("trusted a jump"); return }
        _ = check.admit(Self.item(3, 2), group: "g")
        let release = check.verified(group: "g", genuine: false)
        #expect(release.untrusted == 1)
        #expect(release.deliveries.map { $0.1?.offset } == [nil, 2], "the real offset 2 still follows 1")
    }

    @Test func anotherEpochOrAGapIsCheckedAndWhatWaitsStopsAtTheNextCheck() {
        var check = HistoryPositionCheck()
        _ = check.admit(Self.item(1, 5), group: "g")
        _ = check.verified(group: "g", genuine: true)
        guard case .verify = check.admit(Self.item(2, 1, "F"), group: "g") else { Issue.record("a new epoch was trusted"); return }
        _ = check.admit(Self.item(3, 2, "F"), group: "g")
        _ = check.admit(Self.item(4, 40, "F"), group: "g")
        _ = check.admit(Self.item(5, 41, "F"), group: "g")
        let first = check.verified(group: "g", genuine: true)
        #expect(Self.numbers(first) == [2, 3])
        #expect(first.verify?.position.offset == 40, "the gap after 2 is checked next")
        let second = check.verified(group: "g", genuine: true)
        #expect(Self.numbers(second) == [4, 5] && second.verify == nil)
    }

    @Test func forgettingAGroupChecksItsNextMessageAndKeepsWhatWaits() {
        var check = HistoryPositionCheck()
        _ = check.admit(Self.item(1, 1), group: "g")
        _ = check.verified(group: "g", genuine: true)
        check.forget("g")
        guard case .verify = check.admit(Self.item(2, 2), group: "g") else { Issue.record("trusted after a loss"); return }
        _ = check.admit(Self.item(3, 3), group: "g")
        check.forgetAll()
        #expect(check.isVerifying("g"))
        #expect(Self.numbers(check.verified(group: "g", genuine: true)) == [2, 3])
        guard case .deliver = check.admit(Self.item(4, nil), group: "h") else { Issue.record("a message without a claim waited"); return }
    }

    @Test func whatWaitsIsBounded() {
        var check = HistoryPositionCheck(maxWaiting: 3)
        _ = check.admit(Self.item(1, 1), group: "g")
        for n in Int64(2)...3 { _ = check.admit(Self.item(n, n), group: "g") }
        guard case .deliver(_, nil) = check.admit(Self.item(4, 4), group: "g") else { Issue.record("held past the bound"); return }
    }
}
