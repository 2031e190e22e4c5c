import Testing

@testable import HiredisClient

/// The subscriber's state without a socket: what each call, reply and connection change makes it do.
struct SubscriptionStateMachineTests {
    typealias Machine = SubscriptionStateMachine

    static func connected(sharded: Bool = false, failsWhileUnreachable: Bool = false) -> (Machine, Int) {
        var machine = Machine(sharded: sharded, failsWhileUnreachable: failsWhileUnreachable)
        let connection = machine.connectionNumber()
        _ = machine.attached(connection: connection)
        return (machine, connection)
    }

    @Test func aSubscribeWhileConnectedIsWrittenAndCompletesWhenEveryNameIsConfirmed() {
        var (machine, connection) = Self.connected()
        guard case .write(let waiter) = machine.request(.subscribe, ["a", "b"], address: "r") else { Issue.record("not written"); return }
        #expect(machine.channels == ["a", "b"])
        #expect(machine.confirm(.subscribe, connection: connection) == .none)
        #expect(machine.confirm(.subscribe, connection: connection) == .complete(.waiter(waiter)))
        // A confirmation nobody asked for breaks the protocol.
        guard case .protocolError = machine.confirm(.subscribe, connection: connection) else { Issue.record("unexpected confirmation accepted"); return }
    }

    @Test func repliesFromAReplacedConnectionAreIgnored() {
        var (machine, old) = Self.connected()
        _ = machine.request(.subscribe, ["a"], address: "r")
        _ = machine.detached(connection: old, address: "r")
        let new = machine.connectionNumber()
        _ = machine.attached(connection: new)
        #expect(machine.confirm(.subscribe, connection: old) == .none)
        #expect(machine.shardUnsubscribed("a", connection: old) == .stale)
        #expect(machine.refused(connection: old) == .stale)
        #expect(machine.detached(connection: old, address: "r") == nil)
        #expect(machine.pauseReading(connection: old) == false)
    }

    @Test func whileDisconnectedSubscribesWaitAndTheNextConnectionRestoresEverything() {
        var machine = Machine(sharded: false, failsWhileUnreachable: false)
        guard case .wait(let first) = machine.request(.subscribe, ["a"], address: "r") else { Issue.record("did not wait"); return }
        guard case .wait(let second) = machine.request(.psubscribe, ["p*"], address: "r") else { Issue.record("did not wait"); return }
        #expect(machine.request(.unsubscribe, ["gone"], address: "r") == .succeed)
        #expect(machine.connectFailed(RedisError(.connectionRefused, "refused")).isEmpty, "waiting subscribers keep waiting by default")
        let connection = machine.connectionNumber()
        let restore = machine.attached(connection: connection)
        #expect(restore.commands.map(\.kind) == [.subscribe, .psubscribe])
        #expect(restore.waiting == [first, second] && restore.channelCount == 1 && restore.patternCount == 1)
        #expect(machine.confirm(.subscribe, connection: connection) == .complete(.none), "the first of two restore commands")
        #expect(machine.confirm(.psubscribe, connection: connection) == .complete(.restore))
    }

    @Test func failingWhileUnreachableTakesTheNamesBackAndRefusesAtOnce() {
        var machine = Machine(sharded: false, failsWhileUnreachable: true)
        guard case .wait(let waiter) = machine.request(.subscribe, ["a"], address: "r") else { Issue.record("did not wait"); return }
        #expect(machine.connectFailed(RedisError(.connectionRefused, "refused")) == [waiter])
        #expect(machine.channels.isEmpty)
        guard case .fail(let error) = machine.request(.subscribe, ["b"], address: "r") else { Issue.record("did not fail"); return }
        #expect(error.code == .connectionRefused && !error.mayHaveRun && machine.channels.isEmpty)
        // Unsubscribes are still fine, and a connection clears it.
        #expect(machine.request(.unsubscribe, ["b"], address: "r") == .succeed)
        _ = machine.attached(connection: machine.connectionNumber())
        guard case .write = machine.request(.subscribe, ["c"], address: "r") else { Issue.record("still refusing"); return }
    }

    @Test func losingTheConnectionMovesPendingSubscribesToTheNextAndSettlesUnsubscribes() {
        var (machine, connection) = Self.connected()
        guard case .write(let subscriber) = machine.request(.subscribe, ["a"], address: "r") else { return }
        guard case .write(let unsubscriber) = machine.request(.unsubscribe, ["x"], address: "r") else { return }
        machine.recordFailure(RedisError(.protocolError, "bad"), connection: connection)
        let detach = machine.detached(connection: connection, address: "r")
        #expect(detach?.error.code == .protocolError)
        #expect(detach?.succeed == [unsubscriber] && detach?.failRestore == false)
        #expect(machine.statistics.connectionsLost == 1)
        let restore = machine.attached(connection: machine.connectionNumber())
        #expect(restore.waiting == [subscriber])
    }

    @Test func aRestoreUnderWayFailsWithTheConnection() {
        var machine = Machine(sharded: false, failsWhileUnreachable: false)
        _ = machine.request(.subscribe, ["a"], address: "r")
        let connection = machine.connectionNumber()
        _ = machine.attached(connection: connection)
        #expect(machine.detached(connection: connection, address: "r")?.failRestore == true)
    }

    @Test func aRefusedSubscribeIsNotRetriedAfterReconnects() {
        var (machine, connection) = Self.connected()
        guard case .write(let waiter) = machine.request(.subscribe, ["forbidden"], address: "r") else { return }
        #expect(machine.refused(connection: connection) == .refused(.waiter(waiter), .subscribe))
        #expect(machine.channels.isEmpty)
        #expect(machine.refused(connection: connection) == .unexpected)
    }

    @Test func theServerDroppingAShardChannelIsToldApartFromOurUnsubscribe() {
        var (machine, connection) = Self.connected(sharded: true)
        _ = machine.request(.ssubscribe, ["{a}1", "{a}2"], address: "r")
        _ = machine.confirm(.ssubscribe, connection: connection)
        _ = machine.confirm(.ssubscribe, connection: connection)
        guard case .write(let waiter) = machine.request(.sunsubscribe, ["{a}1"], address: "r") else { return }
        #expect(machine.shardUnsubscribed("{a}1", connection: connection) == .ours(.complete(.waiter(waiter))))
        #expect(machine.shardUnsubscribed("{a}2", connection: connection) == .byServer)
        #expect(machine.channels.isEmpty)
    }

    @Test func restoringShardChannelsSendsOneCommandPerSlotInChunks() {
        var machine = Machine(sharded: true, failsWhileUnreachable: false)
        let names = (0..<1500).map { "{same}\($0)" } + ["{other}"]
        _ = machine.request(.ssubscribe, names, address: "r")
        let restore = machine.attached(connection: machine.connectionNumber())
        #expect(restore.commands.allSatisfy { $0.kind == .ssubscribe })
        #expect(restore.commands.map(\.names.count).sorted() == [1, 500, 1000])
        #expect(Set(restore.commands.map { RedisClusterSlot.of($0.names[0]) }).count == 2)
    }

    @Test func theHealthCheckPingsThenCallsAnUnansweredPingDeadButNotWhileReadingIsPaused() {
        var (machine, connection) = Self.connected()
        let unanswered = RedisError(.timeout, "no PONG")
        #expect(machine.healthCheck(connection: connection, unanswered: unanswered) == .ping)
        #expect(machine.confirm(.pong, connection: connection) == .complete(.none))
        #expect(machine.healthCheck(connection: connection, unanswered: unanswered) == .ping)
        let paused = machine.pauseReading(connection: connection)
        #expect(paused)
        #expect(machine.healthCheck(connection: connection, unanswered: unanswered) == .skip)
        machine.resumeReading()
        #expect(machine.healthCheck(connection: connection, unanswered: unanswered) == .dead)
        #expect(machine.failure == unanswered)
        #expect(machine.healthCheck(connection: connection + 1, unanswered: unanswered) == .stop)
    }

    @Test func aTimedOutWaiterIsForgottenAndAStoppedMachineRefusesEverything() {
        var machine = Machine(sharded: false, failsWhileUnreachable: true)
        guard case .wait(let waiter) = machine.request(.subscribe, ["a"], address: "r") else { return }
        machine.timedOut(waiter)
        #expect(machine.connectFailed(RedisError(.connectionRefused, "refused")).isEmpty)
        machine.stop()
        guard case .fail(let error) = machine.request(.unsubscribe, ["a"], address: "r") else { Issue.record("a stopped machine took a call"); return }
        #expect(error.code == .clientClosed)
    }
}
