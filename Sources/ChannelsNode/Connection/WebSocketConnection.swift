import ChannelLayers
import ChannelsProtocol
import CoreMetrics
import HummingbirdWebSocket
import Logging
import NIOCore
import NIOWebSocket
import Synchronization


/// Runs one WebSocket connection: its channel in the layer, its consumer, its outbound queue.
///
/// Client frames and layer messages are handed to the consumer one at a time, in arrival order. Each
/// source has at most one item in flight, so a busy consumer backs up into TCP (client frames) or into the
/// layer's bounded queue (layer messages, where drops are counted), never into memory here.
struct WebSocketConnection {
    enum Event {
        case text(String)
        case binary([UInt8])
        /// Layer messages in arrival order: a connection that fell behind takes what queued up in one hop.
        case layer([Message])
        case clientGone(code: UInt16)
        case layerFailed(ChannelLayerError)
    }

    let route: ConsumerRouter.Route
    let scope: Scope
    let layer: any ChannelLayer
    let limits: ConnectionLimits
    let metrics: NodeMetrics
    let logger: Logger
    let rawChannel: any Channel
    let registry: ConnectionRegistry

    /// What `prepare` made before the handshake answer: the channel, the consumer, its decision.
    ///
    /// Unchecked Sendable: made in the upgrade decision's task and handed exactly once to the connection's
    /// task (``take()``); the consumer inside is never used by two tasks.
    final class Prepared: @unchecked Sendable {
        let channelName: String
        let queue: OutboundQueue
        let context: ConsumerContext
        let consumer: ConsumerDriver
        let decision: ConnectDecision
        private let taken = Mutex(false)

        init(channelName: String, queue: OutboundQueue, context: ConsumerContext, consumer: ConsumerDriver, decision: ConnectDecision) {
            self.channelName = channelName
            self.queue = queue
            self.context = context
            self.consumer = consumer
            self.decision = decision
        }

        /// Claims the prepared connection; `false` if someone already did.
        func take() -> Bool {
            taken.withLock { taken in
                defer { taken = true }
                return !taken
            }
        }
    }

    /// Creates the connection's channel and consumer and runs `connect()` before the handshake is answered,
    /// as Django Channels does: once a client sees the socket open, its consumer has joined its groups.
    /// Returns `nil` when the layer cannot make a channel.
    func prepare() async -> Prepared? {
        let channelName: String
        do {
            channelName = try await layer.newChannel()
        } catch {
            logger.warning("refusing a connection: the channel layer cannot create a channel", metadata: ["error": "\(error.message)"])
            return nil
        }
        let queue = OutboundQueue(maxMessages: limits.maxQueuedMessages, maxBytes: limits.maxQueuedBytes)
        let rawChannel = self.rawChannel
        let metrics = self.metrics
        let context = ConsumerContext(
            channelName: channelName, layer: layer, scope: scope, limits: limits, outbound: queue,
            onSlowClient: {
                metrics.slowClientCloses.increment()
                queue.close(code: CloseCode.slowClient, reason: "client too slow: outbound queue full", discard: true)
                // A client that does not read may never take the close frame either.
                rawChannel.eventLoop.scheduleTask(in: .seconds(2)) { rawChannel.close(promise: nil) }
            }
        )
        let consumer = route.makeDriver(context)
        let decision: ConnectDecision
        do {
            decision = try await consumer.connect()
        } catch {
            logger.warning("consumer connect() failed", metadata: ["error": "\(error)", "path": "\(scope.path)"])
            decision = .reject(code: CloseCode.internalError)
        }
        let prepared = Prepared(channelName: channelName, queue: queue, context: context, consumer: consumer, decision: decision)
        // The upgrade may still fail (the client went away): then nobody runs the connection, so clean up here.
        rawChannel.closeFuture.whenComplete { [self] _ in
            guard prepared.take() else { return }
            Task { await cleanUp(prepared.context, consumer: nil, channelName: channelName, code: CloseCode.normal) }
        }
        return prepared
    }

    /// Serves the connection. Rethrows what the inbound stream failed with (invalid UTF-8, a message over the
    /// size limit, a protocol error) so that the WebSocket handler closes with the matching code.
    func run(_ prepared: Prepared, inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter) async throws {
        guard prepared.take() else { return }
        metrics.connectionOpened()
        defer { metrics.connectionClosed() }
        let queue = prepared.queue
        let id = registry.add(queue)
        defer { registry.remove(id) }
        let channelName = prepared.channelName
        let context = prepared.context
        let consumer = prepared.consumer
        let metrics = self.metrics

        let inboundFailure = FailureBox()
        await withTaskGroup(of: Void.self) { group in
            group.addTask { [rawChannel] in await Self.send(queue, to: outbound, channel: rawChannel, metrics: metrics) }
            var closeCode = CloseCode.normal
            defer { group.cancelAll() }

            if case .reject(let code) = prepared.decision {
                queue.close(code: code, reason: code == CloseCode.internalError ? "internal error" : "connection rejected")
                await cleanUp(context, consumer: nil, channelName: channelName, code: code)
                await group.next()
                return
            }

            let (events, continuation) = AsyncStream.makeStream(of: (Event, CheckedContinuation<Void, Never>?).self)
            let maxSize = limits.maxMessageSize
            group.addTask {
                do {
                    var messages = inbound.messages(maxSize: maxSize).makeAsyncIterator()
                    while let message = try await messages.next() {
                        let event: Event
                        switch message {
                        case .text(let text): event = .text(text)
                        case .binary(let buffer): event = .binary(Array(buffer: buffer))
                        }
                        await Self.hand(event, to: continuation)
                    }
                } catch {
                    inboundFailure.set(error)
                }
                continuation.yield((.clientGone(code: CloseCode.normal), nil))
            }
            group.addTask {
                while !Task.isCancelled {
                    do throws(ChannelLayerError) {
                        // No more than the outbound queue has room for: a backlog waits in the layer's queue
                        // (bounded, drops counted), and the client is closed as slow only when it is.
                        let messages = try await layer.receive(from: channelName, upTo: min(Self.layerBatch, queue.room))
                        await Self.hand(.layer(messages), to: continuation)
                    } catch {
                        if error.code != .cancelled && error.code != .closed { continuation.yield((.layerFailed(error), nil)) }
                        return
                    }
                }
            }

            var rateLimiter = MessageRateLimiter(perSecond: limits.maxMessagesPerSecond, burst: limits.messageBurst)
            var iterator = events.makeAsyncIterator()
            while let (event, done) = await iterator.next() {
                defer { done?.resume() }
                switch event {
                case .text, .binary:
                    metrics.messagesIn.increment()
                    // A client closed for its rate has its backlog dropped; any other closing connection's
                    // messages, already read, are still handled (nothing it sent is lost).
                    guard queue.closingCode != CloseCode.rateLimited else { break }
                    guard rateLimiter.allow() else {
                        metrics.rateLimitCloses.increment()
                        queue.close(code: CloseCode.rateLimited, reason: "more than \(limits.maxMessagesPerSecond) messages per second")
                        break
                    }
                    do {
                        if case .text(let text) = event { try await consumer.receiveText(text) }
                        if case .binary(let bytes) = event { try await consumer.receiveBinary(bytes) }
                    } catch {
                        fail(queue, error)
                    }
                case .layer(let messages):
                    for message in messages where queue.closingCode == nil {
                        observeLatency(message)
                        do {
                            if try await !consumer.handle(message) {
                                logger.warning("no handler for a layer message", metadata: ["type": "\(message.type ?? "?")", "path": "\(scope.path)"])
                            }
                        } catch {
                            fail(queue, error)
                        }
                    }
                case .layerFailed(let error):
                    logger.warning("the channel layer failed this connection", metadata: ["error": "\(error.message)"])
                    queue.close(code: CloseCode.internalError, reason: "channel layer failed")
                case .clientGone(let code):
                    closeCode = queue.closingCode ?? code
                }
                if case .clientGone = event { break }
            }
            continuation.finish()
            // Producers may still wait for events the loop will never handle: release them, or their tasks
            // (and with them this connection) would never end.
            while let (_, done) = await iterator.next() { done?.resume() }
            queue.finish()
            await cleanUp(context, consumer: consumer, channelName: channelName, code: closeCode)
        }
        if let error = inboundFailure.error, queue.closingCode == nil { throw error }
    }

    /// At most this many layer messages are handed to the consumer loop at once.
    static let layerBatch = 64

    /// The error the inbound stream ended with, handed from its reader task to the connection.
    final class FailureBox: Sendable {
        private let value = Mutex<(any Error)?>(nil)
        func set(_ error: any Error) { value.withLock { $0 = error } }
        var error: (any Error)? { value.withLock { $0 } }
    }

    /// Hands an event to the connection's loop and waits until the loop took it. When the loop has already
    /// ended, the event is dropped and the wait ends at once.
    private static func hand(
        _ event: Event,
        to continuation: AsyncStream<(Event, CheckedContinuation<Void, Never>?)>.Continuation
    ) async {
        await withCheckedContinuation { done in
            if case .terminated = continuation.yield((event, done)) { done.resume() }
        }
    }

    private func fail(_ queue: OutboundQueue, _ error: any Error) {
        // Redis unreachable is not the client's fault nor the consumer's: say the message was lost, keep the
        // connection (the layer reconnects by itself), count it.
        if let layerError = error as? ChannelLayerError, layerError.code == .redis {
            metrics.publishFailures.increment()
            logger.warning("the channel layer could not take a message", metadata: ["error": "\(layerError.message)"])
            _ = queue.enqueue(.text(ClientFrame.error(.unavailable, detail: "the channel layer is unavailable; the message was not delivered")))
            return
        }
        logger.error("consumer failed; closing the connection with 1011", metadata: ["error": "\(error)", "path": "\(scope.path)"])
        queue.close(code: CloseCode.internalError, reason: "internal error")
    }

    private func cleanUp(_ context: ConsumerContext, consumer: ConsumerDriver?, channelName: String, code: UInt16) async {
        await consumer?.disconnect(code)
        for group in context.groups {
            try? await layer.groupDiscard(group, channel: channelName)
        }
        await layer.deleteChannel(channelName)
    }

    private func observeLatency(_ message: Message) {
        guard let sentAt = message["sent_at"]?.double else { return }
        let seconds = WallClock.now() - sentAt
        if seconds >= 0 && seconds < 3600 { metrics.publishToDeliver.recordNanoseconds(Int64(seconds * 1e9)) }
    }

    /// Writes queued frames to the client until the queue closes or finishes.
    ///
    /// A batch goes to the socket in one event-loop hop: written straight into the channel pipeline (the
    /// frame encoder sits below Hummingbird's handler, which forwards writes it did not make) and flushed once.
    /// Going through the WebSocket writer would cost an actor hop and an async-writer hop per frame, the
    /// largest share of a delivery's CPU in the fan-out profile (BENCHMARKS.md). No extension rewrites
    /// frames on this server, so nothing is skipped. Waiting for the write keeps backpressure: while the
    /// socket is full the queue fills and the slow-client rule applies. The close frame still goes through
    /// the writer, after every frame before it was written.
    private static func send(
        _ queue: OutboundQueue, to outbound: WebSocketOutboundWriter, channel: any Channel, metrics: NodeMetrics
    ) async {
        while let batch = await queue.next() {
            switch batch {
            case .frames(let frames):
                let written = channel.eventLoop.makePromise(of: Void.self)
                channel.eventLoop.execute {
                    for (index, frame) in frames.enumerated() {
                        let data: ByteBuffer
                        let opcode: WebSocketOpcode
                        switch frame {
                        case .text(let text): (data, opcode) = (channel.allocator.buffer(string: text), .text)
                        case .binary(let bytes): (data, opcode) = (channel.allocator.buffer(bytes: bytes), .binary)
                        }
                        let promise = index == frames.count - 1 ? written : nil
                        channel.write(NIOAny(WebSocketFrame(fin: true, opcode: opcode, data: data)), promise: promise)
                    }
                    channel.flush()
                }
                do {
                    try await written.futureResult.get()
                    metrics.messagesOut.increment(by: frames.count)
                } catch {
                    return
                }
            case .close(let code, let reason):
                try? await outbound.close(WebSocketErrorCode(codeNumber: Int(code)), reason: reason)
                return
            }
        }
    }
}
