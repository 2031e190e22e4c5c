/// A set that holds a single element inline and becomes a `Set` from the second.
///
/// A connection is in a group or two; a one-element `Set` is a heap allocation of about 100 bytes, and an idle
/// connection kept several (its groups in the layer, in its presence, in its consumer's context).
package struct SmallSet<Element: Hashable>: Sequence {
    fileprivate enum Storage {
        case empty
        case one(Element)
        case many(Set<Element>)
    }

    private var storage: Storage = .empty

    package init() {}

    package var isEmpty: Bool {
        switch storage {
        case .empty: true
        case .one: false
        case .many(let set): set.isEmpty
        }
    }

    package var count: Int {
        switch storage {
        case .empty: 0
        case .one: 1
        case .many(let set): set.count
        }
    }

    package func contains(_ element: Element) -> Bool {
        switch storage {
        case .empty: false
        case .one(let only): only == element
        case .many(let set): set.contains(element)
        }
    }

    /// Adds `element`; returns whether it was not there yet.
    @discardableResult
    package mutating func insert(_ element: Element) -> Bool {
        switch storage {
        case .empty:
            storage = .one(element)
            return true
        case .one(let only):
            guard only != element else { return false }
            storage = .many([only, element])
            return true
        case .many(var set):
            storage = .empty  // Leaves `set` uniquely referenced, so the insert does not copy it.
            let inserted = set.insert(element).inserted
            storage = .many(set)
            return inserted
        }
    }

    /// Removes `element`; returns whether it was there.
    @discardableResult
    package mutating func remove(_ element: Element) -> Bool {
        switch storage {
        case .empty:
            return false
        case .one(let only):
            guard only == element else { return false }
            storage = .empty
            return true
        case .many(var set):
            storage = .empty
            let removed = set.remove(element) != nil
            storage = .many(set)
            return removed
        }
    }

    package func makeIterator() -> Iterator {
        switch storage {
        case .empty: Iterator(one: nil, many: nil)
        case .one(let only): Iterator(one: only, many: nil)
        case .many(let set): Iterator(one: nil, many: set.makeIterator())
        }
    }

    /// Walks the element held inline, or the set's, without copying them.
    package struct Iterator: IteratorProtocol {
        fileprivate var one: Element?
        fileprivate var many: Set<Element>.Iterator?

        package mutating func next() -> Element? {
            if let element = one {
                one = nil
                return element
            }
            return many?.next()
        }
    }
}

extension SmallSet: Sendable where Element: Sendable {}
extension SmallSet.Storage: Sendable where Element: Sendable {}
