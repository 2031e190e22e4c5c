import ChannelLayers
import ChannelsProtocol
import CoreMetrics
import Logging
import Synchronization
import NIOCore

extension ClientConnection {
    // MARK: - The mailbox task

    /// Runs in the mailbox task: consumer code, one event at a time.
    func process(_ events: [Event]) async {
        // Forwarded frames in a row go out together: one hop to the event loop and one flush.
        var frames: [ByteBuffer] = []
        defer { if !frames.isEmpty { post(frames) } }
        for (index, event) in events.enumerated() {
            let closing = closingCode.load(ordering: .relaxed)
            if case .forwarded(let frame) = event {
                if closing == 0 { frames.append(frame) }
                continue
            }
            if !frames.isEmpty {
                post(frames)
                frames = []
            }
            switch event {
            case .text(let text, let number):
                // Every frame here was read within the client's rate and before any close: it is handled
                // (nothing a client sent is lost); what a client sends past its rate is never queued.
                guard let consumer else { continue }
                await run(frame: number) { try await consumer.receiveText(text) }
            case .binary(let bytes, let number):
                guard let consumer else { continue }
                await run(frame: number) { try await consumer.receiveBinary(bytes) }
            case .written(let promise):
                onLoop { [self] in writtenSoFar(promise) }
            case .layer(let delivery):
                guard closing == 0, let consumer else { continue }
                await handle(delivery, consumer)
            case .lost(let reason):
                guard closing == 0 else { continue }
                post(ServerFrame.text(ClientFrame.error(.messagesLost, detail: reason)))
            case .frame(let frame):
                guard closing == 0 else { continue }
                post(frame)
            case .forwarded:
                break
            case .gone(let code):
                for case .written(let promise) in events[(index + 1)...] { promise.fail(ChannelError.ioOnClosedChannel) }
                if accepted { await consumer?.disconnect(code) }
                if let consumerContext {
                    for group in consumerContext.groups {
                        try? await layer.groupDiscard(group, channel: channelName)
                    }
                }
                if !channelName.isEmpty { await layer.deleteChannel(channelName) }
                if let countedUser, let users = layer as? any UserChannelLayer {
                    users.userDisconnected(countedUser)
                    self.countedUser = nil
                }
                self.consumer = nil
                self.consumerContext = nil
                return
            }
        }
    }

    private func handle(_ delivery: Delivery, _ consumer: any ConsumerDriver) async {
        guard let name = delivery.handlerName else {
            warnings.warn("dropped a layer message without a valid type", metadata: ["path": "\(scope.path)"])
            metrics.noHandler.increment()
            return
        }
        if let rule = forwardRule(named: name) {
            if let frame = frame(rule, delivery) { post(frame) }
            return
        }
        guard route?.handlers.contains(name) == true || route?.handlesEveryMessage == true else {
            warnings.warn("no handler for a layer message", metadata: ["type": "\(delivery.message.type ?? "?")", "path": "\(scope.path)"])
            metrics.noHandler.increment()
            return
        }
        await run { _ = try await consumer.handle(delivery.message) }
    }

    /// Runs consumer code; `frame` is the number of the client frame it handles, if it handles one.
    private func run(frame number: Int? = nil, _ body: () async throws -> Void) async {
        handlingFrame = number
        defer { handlingFrame = nil }
        do {
            try await body()
        } catch let error as ChannelLayerError where error.code == .unavailable {
            reportUnavailable(error, frame: number)
        } catch {
            logger.error("consumer failed; closing the connection with 1011", metadata: ["error": "\(error)", "path": "\(scope.path)"])
            requestClose(code: CloseCode.internalError, reason: "internal error")
        }
    }

    /// Redis unreachable is not the client's fault nor the consumer's: keep the connection (the layer
    /// reconnects by itself), count it, and tell the client the truth about its message: not delivered
    /// (sending it again cannot duplicate it), or handed to Redis without a confirmation. From any thread: a
    /// deferred group send reports its failure when Redis answers.
    func reportUnavailable(_ error: ChannelLayerError, frame number: Int?) {
        warnings.warn("the channel layer could not take a message", metadata: ["error": "\(error.message)"])
        let about = number.map { "message \($0) of this connection" } ?? "a message"
        let text: String
        if error.mayHaveTakenEffect {
            metrics.publishUnconfirmed.increment()
            text = ClientFrame.error(
                .unconfirmed, detail: "the channel layer did not confirm \(about) in time; it may or may not have been delivered", frame: number
            )
        } else {
            metrics.publishFailures.increment()
            text = ClientFrame.error(.unavailable, detail: "the channel layer is unavailable; \(about) was not delivered", frame: number)
        }
        post(ServerFrame.text(text))
    }

    func observeLatency(_ message: Message) {
        guard let sentAt = message["sent_at"]?.double else { return }
        let seconds = WallClock.now() - sentAt
        if seconds >= 0 && seconds < 3600 { metrics.publishToDeliver.recordNanoseconds(Int64(seconds * 1e9)) }
    }
}
