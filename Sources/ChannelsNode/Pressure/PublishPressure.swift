import ChannelLayers
import ChannelsProtocol
import CoreMetrics
import Synchronization

/// Publishing slows before a reading client is closed.
///
/// Over Redis nothing ties a publisher's pace to the readers on other nodes: the publisher's own node echoes
/// at its pace while a node behind it fills its clients' outbound buffers until they are closed as slow
/// (4008), although they read. So a client whose outbound buffer passes the soft mark (a quarter of
/// `--max-queued-bytes`) makes its groups lag: publishers on this node wait before their next `groupSend` into
/// them, and the node tells the others through the control group (``NodeControl``) so theirs wait too. The
/// lag ends when the reader is back under half the soft mark, or after ``grace``: a client that stopped reading
/// holds its groups that long at most, then its buffer fills and it is closed 4008 as before.
///
/// Publishers wait in their consumer's task, so a waiting client's frames stay in its socket (the node stops
/// reading it once its mailbox holds ``ClientConnection/maxPendingClientFrames``): TCP slows the client itself.
final class PublishPressure: Sendable {
    /// How long one reader that fell behind holds its groups' publishers; zero: nobody waits, readers past
    /// `--max-queued-bytes` are closed as before.
    let grace: Duration
    /// How long other nodes hold an announcement that is not repeated (it is, every half of it, while it lasts).
    let timeToLive: Duration
    private let nodeID: String
    private let metrics: NodeMetrics
    private let state = Mutex(PublishPressureState())
    /// The state's ``PublishPressureState/activeEntries``, read by every publisher without the lock.
    private let active = Atomic<Int>(0)
    private let wakeups: AsyncStream<Void>
    private let wake: AsyncStream<Void>.Continuation

    /// How often a waiting publisher looks again.
    static let pollInterval = Duration.milliseconds(2)

    init(nodeID: String, grace: Duration, timeToLive: Duration = .milliseconds(500), metrics: NodeMetrics) {
        self.nodeID = nodeID
        self.grace = grace
        self.timeToLive = timeToLive
        self.metrics = metrics
        (wakeups, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    var isEnabled: Bool { grace > .zero }

    // MARK: - Readers, from their event loops

    /// A member of `groups` fell behind reading.
    func fellBehind(_ groups: some Sequence<String>) {
        update { $0.fellBehind(groups) }
    }

    /// A member of `groups` that fell behind caught up, left them, or used up its grace.
    func caughtUp(_ groups: some Sequence<String>) {
        update { $0.caughtUp(groups) }
    }

    private func update(_ change: (inout PublishPressureState) -> Void) {
        let lagging = state.withLock { state in
            change(&state)
            active.store(state.activeEntries, ordering: .relaxed)
            return state.behind.count
        }
        metrics.laggingGroups.record(lagging)
        wake.yield()
    }

    // MARK: - Publishers

    /// Returns once `group` lags nowhere, or after ``grace``.
    func admit(_ group: String) async {
        guard active.load(ordering: .relaxed) > 0 else { return }
        let start = ContinuousClock.now
        guard state.withLock({ $0.isLagging(group, now: start) }) else { return }
        metrics.publishesSlowed.increment()
        var now = start
        repeat {
            do { try await Task.sleep(for: Self.pollInterval) } catch { break }
            now = ContinuousClock.now
        } while now - start < grace && state.withLock({ $0.isLagging(group, now: now) })
        metrics.publishWait.recordNanoseconds(Int64((now - start) / .nanoseconds(1)))
    }

    // MARK: - Other nodes

    /// Another node's announcement (this node's own come back through the control group and are ignored).
    func heard(_ announcement: NodeControl.Lag) {
        guard announcement.node != nodeID else { return }
        let until = ContinuousClock.now + .milliseconds(announcement.timeToLiveMilliseconds)
        state.withLock { state in
            state.heard(from: announcement.node, lagging: announcement.lagging, caughtUp: announcement.caughtUp, until: until)
            active.store(state.activeEntries, ordering: .relaxed)
        }
    }

    /// Tells the other nodes of every change as it comes, and repeats what still lags every half ``timeToLive``,
    /// until cancelled.
    func run(announce: @escaping @Sendable (NodeControl.Lag) async -> Void) async {
        guard isEnabled else { return }
        let milliseconds = Int(timeToLive / .milliseconds(1))
        await withDiscardingTaskGroup { group in
            group.addTask { [self] in
                for await _ in wakeups {
                    let (lagging, caughtUp) = state.withLock { $0.takeAnnouncement() }
                    guard !lagging.isEmpty || !caughtUp.isEmpty else { continue }
                    await announce(NodeControl.Lag(node: nodeID, lagging: lagging, caughtUp: caughtUp, timeToLiveMilliseconds: milliseconds))
                }
            }
            group.addTask { [self] in
                while true {
                    do { try await Task.sleep(for: timeToLive / 2) } catch { return }
                    let lagging = state.withLock { state in
                        state.expire(now: .now)
                        active.store(state.activeEntries, ordering: .relaxed)
                        return state.behind.keys.sorted()
                    }
                    guard !lagging.isEmpty else { continue }
                    await announce(NodeControl.Lag(node: nodeID, lagging: lagging, caughtUp: [], timeToLiveMilliseconds: milliseconds))
                }
            }
        }
    }
}
