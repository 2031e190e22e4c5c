import ChannelLayers
import Synchronization
import Testing

/// A deferred group send's confirmation, awaited before or after it comes, and its failure handlers.
@Suite struct GroupSendReceiptTests {
    @Test func waitersBeforeAndAfterTheOutcomeGetIt() async throws {
        let confirmed = GroupSendReceipt()
        let early = Task { try await confirmed.confirmed() }
        try await Task.sleep(for: .milliseconds(20))
        #expect(!confirmed.isComplete)
        confirmed.complete(nil)
        try await early.value
        try await confirmed.confirmed()
        #expect(confirmed.isComplete)

        let failed = GroupSendReceipt()
        let waiting = Task { () -> ChannelLayerError.Code? in
            do {
                try await failed.confirmed()
                return nil
            } catch {
                return (error as? ChannelLayerError)?.code
            }
        }
        try await Task.sleep(for: .milliseconds(20))
        failed.complete(ChannelLayerError(.unavailable, "Redis is gone"))
        #expect(await waiting.value == .unavailable)
        await #expect(throws: ChannelLayerError.self) { try await failed.confirmed() }
        // A second outcome changes nothing.
        failed.complete(nil)
        await #expect(throws: ChannelLayerError.self) { try await failed.confirmed() }
    }

    @Test func failureHandlersRunOnceOnFailureOnlyEvenWhenAddedLate() {
        let calls = Mutex<[String]>([])
        let failed = GroupSendReceipt()
        failed.onFailure { error in calls.withLock { $0.append("early: \(error.message)") } }
        failed.complete(ChannelLayerError(.unavailable, "refused"))
        failed.onFailure { error in calls.withLock { $0.append("late: \(error.message)") } }
        failed.complete(ChannelLayerError(.unavailable, "again"))
        #expect(calls.withLock { $0 } == ["early: refused", "late: refused"])

        let succeeded = GroupSendReceipt()
        succeeded.onFailure { _ in calls.withLock { $0.append("never") } }
        succeeded.complete(nil)
        succeeded.onFailure { _ in calls.withLock { $0.append("never") } }
        #expect(calls.withLock { $0 }.count == 2)
    }
}
