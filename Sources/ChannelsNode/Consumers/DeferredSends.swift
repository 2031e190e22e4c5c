import ChannelLayers

/// A connection's deferred group sends that wait for their confirmation, at most ``limit``: one more waits for
/// the oldest, so a client that sends faster than the layer confirms is still slowed.
struct DeferredSends {
    static let limit = 16

    /// Oldest first. (An array: empty, it takes no storage on an idle connection; it holds ``limit`` at most.)
    private(set) var pending: [GroupSendReceipt] = []

    /// Forgets the confirmed sends; returns the one to wait for before another may start, when ``limit`` wait.
    mutating func receiptToAwait() -> GroupSendReceipt? {
        pending.removeAll { $0.isComplete }
        return pending.count >= Self.limit ? pending.removeFirst() : nil
    }

    mutating func started(_ receipt: GroupSendReceipt) {
        pending.append(receipt)
    }
}
