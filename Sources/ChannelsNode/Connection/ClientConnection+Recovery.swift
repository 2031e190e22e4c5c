import ChannelLayers
import ChannelsProtocol
import CoreMetrics
import DequeModule
import Logging
import NIOCore

extension ClientConnection {
    // MARK: - Recovery (`?recover=1`): the I/O around RecoveryState

    /// The position a recovering client asked for: `nil` for a fresh client (`?recover=1` alone), `.invalid`
    /// for one the node cannot read (an epoch without an offset, an offset that is not a non-negative
    /// integer): that client cannot continue and is told so (`recovered: false`).
    enum AskedPosition {
        case fresh
        case at(HistoryPosition)
        case invalid

        init(query: [String: String]) {
            let epoch = query["epoch"]
            let offset = query["offset"]
            switch (epoch, offset) {
            case (nil, nil): self = .fresh
            case (let epoch?, let offset?):
                guard !epoch.isEmpty, !offset.isEmpty, offset.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }), let value = Int64(offset) else {
                    self = .invalid
                    return
                }
                self = .at(HistoryPosition(offset: value, epoch: epoch))
            default: self = .invalid
            }
        }
    }

    /// `?recover=1[&epoch=E&offset=N]`: the first frame says whether the client can continue from its last
    /// position, then come the messages it missed, a page at a time behind its outbound buffer, then live
    /// ones. The group was joined before history is read, so a message is either in what was read or
    /// arrives live (or both: it is sent once).
    func recover(_ group: String, from layer: any HistoryChannelLayer) async {
        let asked = AskedPosition(scope: scope)
        let after: Int64? =
            switch asked {
            case .at(let position): position.offset
            case .fresh, .invalid: Int64.max
            }
        let history: GroupHistory
        do throws(ChannelLayerError) {
            guard let read = try await layer.history(of: group, after: after, limit: RecoveryState.firstPageMessages) else { return }
            history = read
        } catch {
            // Not a reason to refuse the connection: say it could not recover; the app reloads.
            logger.warning("could not read a group's history for a recovering client", metadata: ["group": "\(group)", "error": "\(error.message)"])
            metrics.recoveries.increment()
            // No position to filter on: live messages pass as they come (the client reloads anyway).
            let frame = recoveryFrame(recovered: false, epoch: "", offset: 0)
            try? await eventLoop.submit { [self] in mailbox.prepend(.frame(frame)) }.get()
            return
        }
        metrics.recoveries.increment()
        switch asked {
        case .at(let position) where history.continues(from: position):
            let state = RecoveryState(group: group, epoch: position.epoch, delivered: position.offset, replaying: true)
            await installRecovery(state, answer: (true, history.top.epoch, history.top.offset), page: history)
        case .fresh:
            let state = RecoveryState(group: group, epoch: history.top.epoch, delivered: history.top.offset, replaying: false)
            await installRecovery(state, answer: (true, history.top.epoch, history.top.offset), page: nil)
        case .at, .invalid:
            let state = RecoveryState(group: group, epoch: history.top.epoch, delivered: history.top.offset, replaying: false)
            await installRecovery(state, answer: (false, history.top.epoch, history.top.offset), page: nil)
        }
    }

    /// Puts the recovery answer and the first page ahead of what arrived live since the join, and decides
    /// for those live messages as for any later one.
    private func installRecovery(
        _ state: RecoveryState, answer: (recovered: Bool, epoch: String, offset: Int64), page: GroupHistory?
    ) async {
        let frame = recoveryFrame(recovered: answer.recovered, epoch: answer.epoch, offset: answer.offset)
        try? await eventLoop.submit { [self] in
            var state = state
            var events: [Event] = [.frame(frame)]
            if let page { events += pageEvents(state.page(page, limit: RecoveryState.firstPageMessages), state: state) }
            let arrived = mailbox.takeWaiting()
            for event in events { _ = mailbox.append(event, isLayerMessage: false) }
            recovery = state
            recoveredGroup = state.group
            for event in arrived {
                if case .layer(let delivery) = event, delivery.group == state.group {
                    admitLive(delivery, direct: false)
                } else {
                    _ = mailbox.append(event, isLayerMessage: false)
                }
            }
        }.get()
    }

    /// The events a page of history becomes: a notice if the client must know of a restart or a gap, then
    /// the messages as deliveries of the group.
    private func pageEvents(_ page: RecoveryState.Page, state: RecoveryState) -> [Event] {
        var events: [Event] = []
        if let notice = page.notice {
            metrics.historyRestarts.increment()
            events.append(.frame(recoveryFrame(recovered: false, epoch: notice.epoch, offset: notice.offset)))
        }
        for (offset, message) in page.messages {
            events.append(.layer(Delivery(message, group: state.group, position: HistoryPosition(offset: offset, epoch: state.epoch))))
        }
        return events
    }

    /// A live message of the recovered group: delivered, dropped as a copy, held until the replay ends, or
    /// delivered after telling the client its history restarted. `direct`: it may be written at once (the
    /// consumer is idle and nothing waits); otherwise it goes to the mailbox.
    func admitLive(_ delivery: Delivery, direct: Bool) {
        guard var state = recovery else { return enqueue(.layer(delivery)) }
        let verdict = state.live(delivery.position)
        recovery = state
        switch verdict {
        case .skip:
            return
        case .hold:
            if heldDuringReplay.count >= limits.maxQueuedMessages {
                closeAsSlow("more than \(limits.maxQueuedMessages) messages wait for the replay")
                return
            }
            heldDuringReplay.append(delivery)
            return
        case .restarted:
            metrics.historyRestarts.increment()
            let notice = state.restartNotice(before: delivery.position?.offset ?? 1)
            enqueue(.frame(recoveryFrame(recovered: false, epoch: notice.epoch, offset: notice.offset)))
            enqueue(.layer(delivery))
        case .deliver:
            if direct {
                _ = forward(delivery)
            } else {
                enqueue(.layer(delivery))
            }
        }
    }

    /// Reads the rest of a replay a page at a time, each after the previous one reached the socket, so a
    /// client that does not read holds one page, not the whole history. Runs after the upgrade.
    func continueReplay() {
        guard let recovery, recovery.replaying, let layer = layer as? any HistoryChannelLayer else { return }
        let group = recovery.group
        Task { [self] in
            while true {
                let written = eventLoop.makePromise(of: Void.self)
                guard let (from, limit) = try? await eventLoop.submit({ [self] () -> (Int64, Int)? in
                    guard lifecycle.isOpen, let recovery = self.recovery, recovery.replaying else { return nil }
                    enqueue(.written(written))
                    return (recovery.delivered, recovery.pageLimit)
                }).get() else {
                    written.fail(ChannelError.ioOnClosedChannel)
                    return
                }
                // Behind the outbound buffer: the previous page is on the socket before the next is read.
                guard (try? await written.futureResult.get()) != nil else { return }
                let page: GroupHistory?
                do throws(ChannelLayerError) {
                    page = try await layer.history(of: group, after: from, limit: limit)
                } catch {
                    logger.warning("could not read a group's history while replaying it", metadata: ["group": "\(group)", "error": "\(error.message)"])
                    page = nil
                }
                let next = try? await eventLoop.submit({ [self] () -> (more: Bool, pause: Duration?) in
                    guard lifecycle.isOpen, var current = self.recovery, current.replaying else { return (false, nil) }
                    guard let page else {
                        let notice = current.abandonReplay()
                        self.recovery = current
                        metrics.historyRestarts.increment()
                        enqueue(.frame(recoveryFrame(recovered: false, epoch: notice.epoch, offset: notice.offset)))
                        releaseHeld()
                        return (false, nil)
                    }
                    let next = current.page(page, limit: limit)
                    self.recovery = current
                    for event in pageEvents(next, state: current) { enqueue(event) }
                    if !next.more { releaseHeld() }
                    return (next.more, next.pause)
                }).get()
                guard let next, next.more else { return }
                if let pause = next.pause { try? await Task.sleep(for: pause) }
            }
        }
    }

    /// The replay ended: what waited behind it is decided as live messages now.
    private func releaseHeld() {
        let held = heldDuringReplay
        heldDuringReplay = []
        for delivery in held { admitLive(delivery, direct: false) }
    }
}
