import CoreMetrics
import NIOCore

/// A client that falls behind reading holds its groups' publishers (``PublishPressure``) for a grace period,
/// and one that keeps not reading is closed once ``ConnectionLimits/maxQueuedBytes`` wait for it.
extension ClientConnection {
    /// The consumer joined `group`; from its task.
    func joined(_ group: String) {
        onLoop { [self] in
            guard !memberGroups.contains(group) else { return }
            memberGroups.append(group)
            guard pressing else { return }
            pressure.fellBehind(CollectionOfOne(group))
        }
    }

    /// The consumer left `group`; from its task.
    func left(_ group: String) {
        onLoop { [self] in
            guard let index = memberGroups.firstIndex(of: group) else { return }
            memberGroups.remove(at: index)
            guard pressing else { return }
            pressure.caughtUp(CollectionOfOne(group))
        }
    }

    /// NIO's buffer passed the soft mark: the client reads slower than its groups' messages come.
    func fellBehind() {
        guard !behind, lifecycle.isOpen else { return }
        behind = true
        metrics.readersBehind.increment()
        closeIfFull()
        guard lifecycle.isOpen, pressure.isEnabled, !memberGroups.isEmpty else { return }
        pressing = true
        pressure.fellBehind(memberGroups)
        let grace = TimeAmount(pressure.grace)
        // Past it the client is taken for one that stopped reading: its groups go on without it.
        graceTimer = eventLoop.scheduleTask(in: grace) { [self] in
            graceTimer = nil
            if pressing { metrics.readersPastGrace.increment() }
            stopPressing()
        }
    }

    /// NIO's buffer is back under half the soft mark.
    func caughtUpReading() {
        guard behind else { return }
        behind = false
        stopPressing()
    }

    func stopPressing() {
        graceTimer?.cancel()
        graceTimer = nil
        guard pressing else { return }
        pressing = false
        pressure.caughtUp(memberGroups)
    }

    /// While behind, after each flush: more than ``ConnectionLimits/maxQueuedBytes`` wait for a client that does
    /// not read; it is slow, not the node.
    func closeIfFull() {
        guard lifecycle.isOpen, let waiting = try? channel.syncOptions?.getOption(.bufferedWritableBytes),
            waiting >= limits.maxQueuedBytes
        else { return }
        closeAsSlow("outbound buffer full")
    }
}
