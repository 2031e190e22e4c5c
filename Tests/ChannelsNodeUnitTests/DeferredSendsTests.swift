import ChannelLayers
import Testing

@testable import ChannelsNode

/// The window of a connection's deferred group sends.
@Suite struct DeferredSendsTests {
    @Test func theSeventeenthSendWaitsForTheOldestAndConfirmedOnesMakeRoom() {
        var sends = DeferredSends()
        let receipts = (0..<DeferredSends.limit).map { _ in GroupSendReceipt() }
        for receipt in receipts {
            #expect(sends.receiptToAwait() == nil)
            sends.started(receipt)
        }
        // Full: the oldest is handed out to wait for, and leaves the window.
        #expect(sends.receiptToAwait() === receipts[0])
        #expect(sends.pending.count == DeferredSends.limit - 1)
        sends.started(GroupSendReceipt())
        // Confirmed sends (failed ones too: their failure was reported) leave the window, wherever they stand.
        receipts[5].complete(nil)
        receipts[9].complete(ChannelLayerError(.unavailable, "gone"))
        #expect(sends.receiptToAwait() == nil)
        #expect(sends.pending.count == DeferredSends.limit - 2)
        #expect(sends.pending.first === receipts[1])
    }
}
