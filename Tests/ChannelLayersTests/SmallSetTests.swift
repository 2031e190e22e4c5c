import Testing

@testable import ChannelLayers

/// The inline-first set behaves as a `Set` through every change of its storage.
struct SmallSetTests {
    @Test func insertsRemovesAndListsLikeASet() {
        var set = SmallSet<String>()
        #expect(set.isEmpty && set.count == 0 && Array(set).isEmpty)
        var changed = set.insert("a")
        #expect(changed)
        changed = set.insert("a")
        #expect(!changed, "already there")
        #expect(set.contains("a") && !set.contains("b") && set.count == 1 && Array(set) == ["a"])
        changed = set.insert("b")
        #expect(changed)
        changed = set.insert("b")
        #expect(!changed)
        #expect(set.count == 2 && Set(set) == ["a", "b"])
        changed = set.remove("c")
        #expect(!changed)
        changed = set.remove("a")
        #expect(changed)
        changed = set.remove("a")
        #expect(!changed)
        #expect(set.count == 1 && Set(set) == ["b"] && !set.contains("a"))
        changed = set.remove("b")
        #expect(changed)
        #expect(set.isEmpty && set.count == 0)
        set.insert("c")
        changed = set.remove("d")
        #expect(!changed && Array(set) == ["c"], "removing another element from one leaves it")
    }

    @Test func holdsManyElements() {
        var set = SmallSet<Int>()
        var inserted = 0
        for value in 0..<1_000 where set.insert(value) { inserted += 1 }
        #expect(inserted == 1_000 && set.count == 1_000 && Set(set) == Set(0..<1_000))
        var removed = 0
        for value in stride(from: 0, to: 1_000, by: 2) where set.remove(value) { removed += 1 }
        #expect(removed == 500 && set.count == 500 && set.contains(1) && !set.contains(2))
    }
}
