import ChannelLayers
import ChannelsProtocol
import HiredisClient
import Logging
import NIOCore
import NIOPosix
import Synchronization

extension RedisCoreChannelLayer {
    /// The one loop that reads this process's queue: restore what a previous run left in flight, then
    /// `BZPOPMIN`, take whatever else waits in the same step, hand it all to the local channels, and
    /// acknowledge it with the next pop.
    /// - Throws: what retrying cannot fix (refused credentials, a command the ACL forbids).
    func receiveLoop() async throws(RedisError) {
        let inflight = CoreWire.inflightKey(queue: queueKey)
        let timeout = max(1, Int(configuration.receiveTimeout.components.seconds))
        var receiving = CoreReceiveState()
        let fatal: RedisError? = await withTaskCancellationHandler {
            while !Task.isCancelled {
                do throws(RedisError) {
                    if receiving.needsRestore {
                        let count = try await receiver.send(RedisCommand("EVAL", .string(CoreWire.restoreInflightScript), 2, .string(queueKey), .string(inflight)))
                        if let count = count.integer, count > 0 {
                            logger.info("re-queued messages a previous receive left unhandled", metadata: ["count": "\(count)"])
                        }
                        if receiving.restoredInFlight() {
                            state.withLock { $0.reconnections += 1 }
                            logger.info("Redis is back; reading the queue again and writing memberships anew", metadata: ["queue": "\(queueKey)"])
                            await writeMemberships()
                        }
                    }
                    var commands: [RedisCommand] = []
                    if !receiving.unacknowledged.isEmpty {
                        commands.append(RedisCommand("ZREM", arguments: [.string(inflight)] + receiving.unacknowledged.map { .bytes($0) }))
                    }
                    commands.append(RedisCommand("BZPOPMIN", .string(queueKey), .integer(timeout)))
                    let replies = try await receiver.pipeline(commands).checked("BZPOPMIN \(queueKey)")
                    guard let popped = replies.last?.array, popped.count == 3, let first = popped[1].bytes, let score = popped[2].string else {
                        receiving.popped([])
                        continue
                    }
                    let more = try await receiver.send(
                        RedisCommand(
                            "EVAL", .string(CoreWire.takeBatchScript), 2, .string(queueKey), .string(inflight),
                            .integer(configuration.receiveBatch - 1), .bytes(first), .string(score)
                        )
                    ).array ?? []
                    var bodies = [first]
                    var index = 0
                    while index + 1 < more.count {
                        if let body = more[index].bytes { bodies.append(body) }
                        index += 2
                    }
                    receiving.popped(bodies)
                    for body in bodies { deliver(body) }
                    // Messages wait in Redis, not here, while the event loops catch up.
                    await local.dispatcher.waitForRoom()
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

    /// Hands one body from the queue to the local channels it names, decoding it once.
    func deliver(_ body: [UInt8]) {
        let message: Message
        let channels: [String]
        do {
            (message, channels) = try envelope.open(body)
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
        var inboxes: [any ChannelInbox] = []
        var queued: [String] = []
        local.withMembership { membership in
            for channel in channels {
                if let inbox = membership.inboxes[channel] {
                    inboxes.append(inbox)
                } else {
                    queued.append(channel)
                }
            }
        }
        // Channels that left meanwhile (or were never this process's) miss it: they are no members any more.
        for channel in queued { _ = local.queues.put(message, on: channel, create: false) }
        guard !inboxes.isEmpty else { return }
        let delivery = Delivery(message)
        if inboxes.count == 1 {
            local.dispatcher.dispatch(delivery, to: inboxes[0])
        } else {
            local.dispatcher.dispatch(delivery, to: GroupIndex.byEventLoop(inboxes))
        }
    }
}
