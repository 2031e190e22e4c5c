import ChannelLayers
import ChannelsProtocol
import HiredisClient
import Logging
import NIOCore
import NIOPosix
import Synchronization

extension RedisCoreChannelLayer {
    /// The one loop that reads this process's queue: restore what a previous run left in flight, then take
    /// batches with one script each (acknowledge the previous batch, pop the next into the in-flight set,
    /// take the missed record), hand them to the local channels, and block in `BZPOPMIN` only once a batch
    /// found the queue empty. ``CoreReceiveState`` makes the decisions.
    /// - Throws: what retrying cannot fix (refused credentials, a command the ACL forbids).
    func receiveLoop() async throws(RedisError) {
        let inflight = CoreWire.inflightKey(queue: queueKey)
        let missed = CoreWire.missedKey(queue: queueKey)
        let timeout = max(1, Int(configuration.receiveTimeout.components.seconds))
        var receiving = CoreReceiveState()
        var targetCache = CoreTargetCache()
        let fatal: RedisError? = await withTaskCancellationHandler {
            while !Task.isCancelled {
                do throws(RedisError) {
                    switch receiving.next(batch: configuration.receiveBatch) {
                    case .restore:
                        // What the last batch handed on is acknowledged first: re-queued, it would come twice.
                        var commands: [RedisCommand] = []
                        if !receiving.unacknowledged.isEmpty {
                            commands.append(RedisCommand("ZREM", arguments: [.string(inflight)] + receiving.unacknowledged.map { .bytes($0) }))
                        }
                        commands.append(RedisCommand("EVAL", .string(CoreWire.restoreInflightScript), 2, .string(queueKey), .string(inflight)))
                        let replies = try await receiver.pipeline(commands).checked("restoring \(inflight)")
                        if let count = replies.last?.integer, count > 0 {
                            logger.info("re-queued messages a previous receive left unhandled", metadata: ["count": "\(count)"])
                        }
                        if receiving.restoredInFlight() {
                            state.withLock { $0.reconnections += 1 }
                            logger.info("Redis is back; reading the queue again and writing memberships anew", metadata: ["queue": "\(queueKey)"])
                            await writeMemberships()
                        }
                    case .takeBatch(let limit):
                        var arguments: [RedisArgument] = [
                            3, .string(queueKey), .string(inflight), .string(missed), .integer(limit),
                            .string(receiving.waiting?.score ?? ""), .bytes(receiving.waiting?.body ?? []),
                        ]
                        arguments.append(contentsOf: receiving.unacknowledged.map { .bytes($0) })
                        let reply = try await CoreWire.takeBatch.run(arguments, on: receiver)
                        guard let taken = CoreWire.takenBatch(reply) else {
                            throw RedisError(.errorReply, "the receive script of \(queueKey) answered \(reply)")
                        }
                        let bodies = receiving.took(taken.bodies)
                        if !taken.missed.isEmpty { tellMembersOfMissed(taken.missed) }
                        guard !bodies.isEmpty else { continue }
                        var batch = InboxDispatcher.Batch()
                        for body in bodies { deliver(body, into: &batch, cache: &targetCache) }
                        local.dispatcher.dispatch(batch)
                        // Messages wait in Redis, not here, while the event loops catch up.
                        await local.dispatcher.waitForRoom()
                    case .wait:
                        // Lists resolved before a connection closed would keep its inbox until the next message.
                        targetCache.update(to: local.withMembership { $0.inboxGeneration })
                        let popped = try await receiver.send(RedisCommand("BZPOPMIN", .string(queueKey), .integer(timeout)))
                        if let entry = popped.array, entry.count == 3, let body = entry[1].bytes, let score = entry[2].string {
                            receiving.waited(CoreReceiveState.Entry(body: body, score: score))
                        } else {
                            receiving.waited(nil)
                        }
                    }
                } catch {
                    if Task.isCancelled { break }
                    switch receiving.failed(error) {
                    case .fatal:
                        return error
                    case .refused(let attempt):
                        warnings.warn(
                            "Redis refuses to read this node's queue; messages for it wait or are lost until the key is fixed",
                            metadata: ["queue": "\(queueKey)", "error": "\(error.message)"]
                        )
                        try? await Task.sleep(for: Self.refusalBackoff.delay(forAttempt: attempt))
                    case .lost(let attempt, let first):
                        if first {
                            state.withLock { $0.connectionLosses += 1 }
                            logger.warning(
                                "lost the Redis connection that reads this node's queue; messages wait in Redis until it is back",
                                metadata: ["error": "\(error.message)"]
                            )
                        } else if attempt % 10 == 0 {
                            logger.warning("cannot reach Redis", metadata: ["error": "\(error.message)", "attempt": "\(attempt)"])
                        }
                        try? await Task.sleep(for: configuration.reconnectPolicy.delay(forAttempt: attempt))
                    }
                }
            }
            return nil
        } onCancel: {
            // Ends a BZPOPMIN that would otherwise block shutdown for up to receiveTimeout.
            Task { await self.receiver.close() }
        }
        if let fatal { throw fatal }
    }

    /// How long the receive loop waits after Redis refused to read the queue: 100 ms, doubling to 5 s.
    static let refusalBackoff = RedisReconnectPolicy(initialDelay: .milliseconds(100), maximumDelay: .seconds(5), jitter: 0.1)

    /// Hands one body from the queue to the local channels it names, decoding it once; `cache` keeps what
    /// a group's list of names resolved to, for its next message.
    func deliver(_ body: [UInt8], into batch: inout InboxDispatcher.Batch, cache: inout CoreTargetCache) {
        let message: Message
        let targets: CoreTargets
        do {
            let target: [UInt8]?
            (message, target) = try envelope.open(body)
            guard let target else { return }
            let generation = local.withMembership { $0.inboxGeneration }
            if let cached = cache.targets(for: target, generation: generation) {
                targets = cached
            } else {
                let channels = try MessageEnvelope.channels(in: target)
                let (resolved, generation) = local.withMembership { (CoreTargets(channels: channels, inboxes: $0.inboxes), $0.inboxGeneration) }
                cache.store(resolved, for: target, generation: generation)
                targets = resolved
            }
        } catch {
            switch error {
            case .undecryptable(let reason):
                state.withLock { $0.undecryptable += 1 }
                warnings.warn(
                    "dropped a message no encryption key of this node decrypts; check CHANNELS_SYMMETRIC_ENCRYPTION_KEYS against Django's symmetric_encryption_keys",
                    metadata: ["queue": "\(queueKey)", "reason": "\(reason)"]
                )
            case .undecodable(let reason):
                state.withLock { $0.undecodable += 1 }
                warnings.warn("dropped a queue entry that is not a channel layer message", metadata: ["queue": "\(queueKey)", "reason": "\(reason)"])
            }
            return
        }
        // Channels that left meanwhile (or were never this process's) miss it: they are no members any more.
        for channel in targets.queued { _ = local.queues.put(message, on: channel, create: false) }
        guard !targets.pushed.isEmpty else { return }
        let delivery = Delivery(message)
        if targets.pushed.count == 1, targets.pushed[0].inboxes.count == 1 {
            batch.add(delivery, to: targets.pushed[0].inboxes[0])
        } else {
            batch.add(delivery, to: targets.pushed)
        }
    }
}

extension RedisCoreChannelLayer {
    /// Senders could not write these groups' messages to this process's full queue (their script recorded
    /// it): tells each local inbox that is a member of such a group, on its event loop, as the pub/sub layer
    /// tells the inboxes a lost subscription touched; counts the messages and says so in the log.
    ///
    /// Only what Swift senders recorded is known here: Django's own `group_send` skips a full queue silently.
    func tellMembersOfMissed(_ missed: [(group: String, count: Int)]) {
        let affected = local.withMembership { membership in
            missed.map { group, count in
                (group, count, (membership.groups[group] ?? [:]).keys.compactMap { membership.inboxes[$0] })
            }
        }
        let total = missed.reduce(0) { $0 + $1.count }
        state.withLock { $0.missed += total }
        warnings.warn(
            "senders found this node's queue full and could not write group messages to it; its members were told. Raise the capacity of specific.* (channel_capacity) on every sender",
            metadata: ["queue": "\(queueKey)", "messages": "\(total)", "groups": "\(missed.map(\.group))"]
        )
        for (group, count, inboxes) in affected {
            let reason = "this node's queue was full: \(count) message\(count == 1 ? "" : "s") for group \(group) could not be written to it"
            for inbox in inboxes {
                inbox.eventLoop.execute { inbox.messagesLost(reason: reason) }
            }
        }
    }
}
