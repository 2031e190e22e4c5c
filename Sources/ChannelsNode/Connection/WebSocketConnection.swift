import ChannelLayers
import ChannelsProtocol
import CoreMetrics
import DequeModule
import Logging
import NIOCore
import NIOWebSocket
import OrderedCollections
import Synchronization

/// One WebSocket connection: a channel handler on its event loop, and the layer's inbox for its channel.
///
/// A group message takes a straight line: the layer hands it to this inbox on the connection's event loop,
/// a ``ForwardRule`` turns it into a frame made once for every member, the frame is written and the batch
/// flushed once. No task runs for that, and an idle connection has no task at all.
///
/// Consumer code (client frames, handlers with code, `connect`, `disconnect`) runs in a task started when
/// the mailbox has work and ended when it is empty, one at a time and in arrival order, like Django's
/// consumers. While it runs, forwarded messages wait in the mailbox behind the events before them, so
/// frames reach the client in the order their messages arrived.
///
/// Bounds: the socket's pending bytes (``ConnectionLimits/maxQueuedBytes``, NIO's write-buffer high
/// water mark) and the mailbox (``ConnectionLimits/maxQueuedMessages``); past either the client is
/// closed with 4008 and counted. While client frames wait for the consumer the socket is not read.
///
/// Unchecked Sendable: everything mutable is touched on ``eventLoop`` only, except the consumer, its
/// context and the channel name, which the preparing task sets before the upgrade completes (the
/// upgrade's future orders those writes before any read on the loop) and the mailbox task uses one at a time.
final class WebSocketConnection: ChannelInboundHandler, ChannelInbox, @unchecked Sendable {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = ByteBuffer

    private enum Event {
        /// A client frame and its number on this connection (from 1), which error frames about it name.
        case text(String, number: Int)
        case binary([UInt8], number: Int)
        case layer(Delivery)
        case lost(String)
        /// A frame the node made (the recovery answer).
        case frame(ByteBuffer)
        /// The socket closed: run `disconnect` and leave the groups.
        case gone(code: UInt16)
        /// Completes once every frame before it was written to the socket (a replay page went out).
        case written(EventLoopPromise<Void>)
    }

    private enum State {
        case open
        /// A close frame was sent; waiting for the client's, or the timeout.
        case closing
        case closed
    }

    let eventLoop: any EventLoop
    let channel: any Channel
    let route: ConsumerRouter.Route?
    let scope: Scope
    let layer: any ChannelLayer
    let limits: ConnectionLimits
    private let metrics: NodeMetrics
    private let logger: Logger
    private let warnings: WarningLimiter
    private let pingInterval: TimeAmount
    private let onClosed: @Sendable (WebSocketConnection) -> Void

    /// Set by ``prepare()`` before the upgrade.
    private(set) var channelName = ""
    private var consumer: ConsumerDriver?
    private var consumerContext: ConsumerContext?
    /// Whether `connect()` accepted: only then does the consumer get `disconnect`.
    private var accepted = false
    /// Close at once with this after the upgrade (a refused handshake or `connect()`).
    private var refusal: (code: UInt16, reason: String)?
    /// `connect()` denied the handshake: answer with this HTTP status instead of upgrading.
    private(set) var denial: HandshakeRejection?
    /// Headers for the handshake's answer, from `connect()`.
    private(set) var handshakeHeaders: [(name: String, value: String)] = []
    /// The connection's own forward rules, from `connect()`, in place of the route's.
    private var connectionRules: [String: ForwardRule]?

    // Event-loop state.
    private var handlerContext: ChannelHandlerContext?
    private var mailbox = Deque<Event>()
    private var running = false
    private var state = State.open
    private var inBatch = false
    private var unflushedFrames = 0
    /// Frames of the current batch, gathered into one buffer: one pipeline write and one iovec per batch.
    private var unwritten: ByteBuffer?
    private var readPaused = false
    private var pendingClientFrames = 0
    private var rateLimiter: MessageRateLimiter
    private var pingTask: RepeatedTask?
    private var heardSincePing = true
    private var closeTimeout: Scheduled<Void>?
    private var lastRule: (name: String, rule: ForwardRule?)?
    /// The history group this connection recovers, and what it got of it.
    private var recovery: RecoveryState?
    /// Live messages of the recovered group that wait for the replay to end.
    private var heldDuringReplay: [Delivery] = []
    /// Client frames read so far.
    private var clientFrames = 0
    /// The close code the consumer's `disconnect` gets.
    private var endCode = CloseCode.abnormal
    /// Read by the mailbox task: the code the connection is closing with, 0 while open.
    private let closingCode = Atomic<UInt16>(0)

    /// Client frames waiting for the consumer before the socket stops being read.
    static let maxPendingClientFrames = 32

    init(
        channel: any Channel, route: ConsumerRouter.Route?, scope: Scope, layer: any ChannelLayer, limits: ConnectionLimits,
        metrics: NodeMetrics, logger: Logger, warnings: WarningLimiter, pingInterval: Duration,
        onClosed: @escaping @Sendable (WebSocketConnection) -> Void
    ) {
        self.eventLoop = channel.eventLoop
        self.channel = channel
        self.route = route
        self.scope = scope
        self.layer = layer
        self.limits = limits
        self.metrics = metrics
        self.logger = logger
        self.warnings = warnings
        self.pingInterval = .nanoseconds(Int64(pingInterval / .nanoseconds(1)))
        self.onClosed = onClosed
        self.rateLimiter = MessageRateLimiter(perSecond: limits.maxMessagesPerSecond, burst: limits.messageBurst)
    }

    // MARK: - Before the upgrade (in the handshake's task)

    /// Makes the connection's channel and consumer and runs `connect()` before the handshake is answered,
    /// as Django Channels does: once a client sees the socket open, its consumer has joined its groups.
    func prepare() async {
        guard let route else { return }
        do {
            channelName = try await layer.newChannel(prefix: "specific.", inbox: self)
        } catch {
            refuseUnavailable(error)
            return
        }
        let context = ConsumerContext(channelName: channelName, layer: layer, scope: scope, limits: limits, connection: self)
        let consumer = route.makeDriver(context)
        self.consumerContext = context
        self.consumer = consumer
        do {
            switch try await consumer.connect() {
            case .accept: accepted = true
            case .reject(let code, let reason): refusal = (code, reason ?? "connection rejected")
            case .deny(let status, let reason): denial = HandshakeRejection(status: status, reason: reason)
            }
        } catch let error as ChannelLayerError where error.code == .redis {
            // The consumer could not join its groups: the layer is down, not the consumer. Come back later.
            refuseUnavailable(error)
        } catch {
            logger.warning("consumer connect() failed", metadata: ["error": "\(error)", "path": "\(scope.path)"])
            refusal = (CloseCode.internalError, "internal error")
        }
        if accepted {
            connectionRules = context.forwardRules
            handshakeHeaders = context.handshakeHeaders
        }
        if accepted, wantsPresence, let group = context.presenceGroups.sorted().first {
            await sendPresence(of: group)
        }
        if accepted, scope.query["recover"] == "1", let group = context.groups.sorted().first(where: layer.keepsHistory) {
            await recover(group)
        }
    }

    /// Refuses the connection with 1013 (try again later) because the layer cannot reach its backend.
    private func refuseUnavailable(_ error: ChannelLayerError) {
        metrics.layerUnavailableRefusals.increment()
        warnings.warn("refusing connections: the channel layer is unavailable", metadata: ["error": "\(error.message)"])
        refusal = (CloseCode.tryAgainLater, "channel layer unavailable; connect again")
    }

    /// `?presence=1`: `{"type": "presence", "group": G, "channel": <this connection's>, "members": [...]}` once
    /// joined, ahead of live messages.
    private func sendPresence(of group: String) async {
        let members: [PresenceMember]
        do {
            members = try await layer.presence(of: group)
        } catch {
            logger.warning("could not read a group's presence", metadata: ["group": "\(group)", "error": "\(error.message)"])
            return
        }
        let list: [MessageValue] = members.map { member in .map(OrderedDictionary(uniqueKeysWithValues: member.fields)) }
        let answer: OrderedDictionary<String, MessageValue> = [
            "type": "presence", "group": .string(group), "channel": .string(channelName), "members": .array(list),
        ]
        guard let text = try? ClientFrame.encode(answer) else { return }
        let frame = ServerFrame.text(text)
        try? await eventLoop.submit { [self] in mailbox.prepend(.frame(frame)) }.get()
    }

    /// The position a recovering client asked for: `nil` for a fresh client (`?recover=1` alone), `.invalid`
    /// for one the node cannot read (an epoch without an offset, an offset that is not a non-negative
    /// integer): that client cannot continue and is told so (`recovered: false`).
    private enum AskedPosition {
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
    private func recover(_ group: String) async {
        let asked = AskedPosition(query: scope.query)
        let after: Int64? =
            switch asked {
            case .at(let position): position.offset
            case .fresh, .invalid: Int64.max
            }
        let history: GroupHistory
        do {
            guard let read = try await layer.history(of: group, after: after, limit: RecoveryState.firstPageMessages) else { return }
            history = read
        } catch {
            // Not a reason to refuse the connection: say it could not recover; the app reloads.
            logger.warning("could not read a group's history for a recovering client", metadata: ["group": "\(group)", "error": "\(error.message)"])
            metrics.recoveries.increment()
            let state = RecoveryState(group: group, epoch: "", delivered: 0, replaying: false)
            await installRecovery(state, answer: (false, "", 0), page: nil)
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

    private static func recoveryFrame(recovered: Bool, epoch: String, offset: Int64) -> ByteBuffer {
        let answer: OrderedDictionary<String, MessageValue> = [
            "type": "recovery", "recovered": .bool(recovered), "epoch": .string(epoch), "offset": .int(offset),
        ]
        return ServerFrame.text((try? ClientFrame.encode(answer)) ?? "{}")
    }

    /// Puts the recovery answer and the first page ahead of what arrived live since the join, and decides
    /// for those live messages as for any later one.
    private func installRecovery(
        _ state: RecoveryState, answer: (recovered: Bool, epoch: String, offset: Int64), page: GroupHistory?
    ) async {
        let frame = Self.recoveryFrame(recovered: answer.recovered, epoch: answer.epoch, offset: answer.offset)
        try? await eventLoop.submit { [self] in
            var state = state
            var events: [Event] = [.frame(frame)]
            if let page { events += pageEvents(state.page(page, limit: RecoveryState.firstPageMessages), state: state) }
            let arrived = mailbox
            mailbox = Deque(events)
            recovery = state
            for event in arrived {
                if case .layer(let delivery) = event, delivery.group == state.group {
                    admitLive(delivery, direct: false)
                } else {
                    mailbox.append(event)
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
            events.append(.frame(Self.recoveryFrame(recovered: false, epoch: notice.epoch, offset: notice.offset)))
        }
        for (offset, message) in page.messages {
            events.append(.layer(Delivery(message, group: state.group, position: HistoryPosition(offset: offset, epoch: state.epoch))))
        }
        return events
    }

    /// A live message of the recovered group: delivered, dropped as a copy, held until the replay ends, or
    /// delivered after telling the client its history restarted. `direct`: it may be written at once (the
    /// consumer is idle and nothing waits); otherwise it goes to the mailbox.
    private func admitLive(_ delivery: Delivery, direct: Bool) {
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
            enqueue(.frame(Self.recoveryFrame(recovered: false, epoch: notice.epoch, offset: notice.offset)))
            enqueue(.layer(delivery))
        case .deliver:
            if direct, let name = delivery.handlerName, let rule = rule(for: name), !running, mailbox.isEmpty, handlerContext != nil {
                if let frame = frame(rule, delivery) { write(frame) }
            } else {
                enqueue(.layer(delivery))
            }
        }
    }

    /// Reads the rest of a replay a page at a time, each after the previous one reached the socket, so a
    /// client that does not read holds one page, not the whole history. Runs after the upgrade.
    private func continueReplay() {
        guard let recovery, recovery.replaying else { return }
        let group = recovery.group
        Task { [self] in
            while true {
                let written = eventLoop.makePromise(of: Void.self)
                guard let (from, limit) = try? await eventLoop.submit({ [self] () -> (Int64, Int)? in
                    guard state == .open, let recovery = self.recovery, recovery.replaying else { return nil }
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
                let more = try? await eventLoop.submit({ [self] () -> Bool in
                    guard state == .open, var current = self.recovery, current.replaying else { return false }
                    guard let page else {
                        let notice = current.abandonReplay()
                        self.recovery = current
                        metrics.historyRestarts.increment()
                        enqueue(.frame(Self.recoveryFrame(recovered: false, epoch: notice.epoch, offset: notice.offset)))
                        releaseHeld()
                        return false
                    }
                    let next = current.page(page, limit: limit)
                    self.recovery = current
                    for event in pageEvents(next, state: current) { enqueue(event) }
                    if !next.more { releaseHeld() }
                    return next.more
                }).get()
                guard more == true else { return }
            }
        }
    }

    /// The replay ended: what waited behind it is decided as live messages now.
    private func releaseHeld() {
        let held = heldDuringReplay
        heldDuringReplay = []
        for delivery in held { admitLive(delivery, direct: false) }
    }

    /// Closes at once after the upgrade: a handshake step refused the connection.
    func refuse(code: UInt16, reason: String) {
        refusal = (code, reason)
    }

    /// The upgrade did not happen (the client left first): forget the channel and the memberships.
    func abandon() {
        eventLoop.execute { [self] in
            guard handlerContext == nil, state == .open else { return }
            state = .closed
            enqueue(.gone(code: CloseCode.abnormal))
        }
    }

    // MARK: - Channel handler

    func handlerAdded(context: ChannelHandlerContext) {
        handlerContext = context
        if let refusal {
            // A refused consumer gets no disconnect, but its channel and memberships go when the socket closes.
            close(code: refusal.code, reason: refusal.reason)
            return
        }
        let interval = pingInterval
        pingTask = eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { [self] _ in checkAlive() }
        startTaskIfNeeded()
        continueReplay()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        heardSincePing = true
        // RFC 6455 5.1: a server must close the connection when a client frame is not masked.
        guard frame.maskKey != nil else {
            close(code: CloseCode.protocolError, reason: "client frames must be masked")
            return
        }
        switch frame.opcode {
        case .text, .binary:
            guard state == .open else { return }
            metrics.messagesIn.increment()
            metrics.traffic.countIn()
            guard rateLimiter.allow() else {
                metrics.rateLimitCloses.increment()
                close(code: CloseCode.rateLimited, reason: "more than \(limits.maxMessagesPerSecond) messages per second")
                return
            }
            let data = frame.unmaskedData
            clientFrames += 1
            if frame.opcode == .text {
                guard let text = String(validating: data.readableBytesView, as: UTF8.self) else {
                    close(code: CloseCode.invalidPayload, reason: "a text frame must be UTF-8")
                    return
                }
                enqueue(.text(text, number: clientFrames))
            } else if route?.acceptsBinary == false {
                // Say so rather than drop it silently; the connection stays.
                write(ServerFrame.text(ClientFrame.error(.invalidFrame, detail: "this endpoint takes text frames only")))
                flush()
                return
            } else {
                enqueue(.binary(Array(data.readableBytesView), number: clientFrames))
            }
            pendingClientFrames += 1
            if pendingClientFrames >= Self.maxPendingClientFrames, !readPaused {
                readPaused = true
                try? context.channel.syncOptions?.setOption(.autoRead, value: false)
            }
        case .ping:
            guard state == .open else { return }
            write(ServerFrame.make(.pong, payload: frame.unmaskedData.readableBytesView))
            flush()
        case .pong:
            break
        case .connectionClose:
            var data = frame.unmaskedData
            let code = data.readInteger(as: UInt16.self) ?? CloseCode.normal
            if state == .open {
                // Answer with the client's code, then close once the answer is out.
                endCode = code
                state = .closing
                closingCode.store(code, ordering: .relaxed)
                flush()
                let channel = context.channel
                context.writeAndFlush(wrapOutboundOut(ServerFrame.close(code: code, reason: ""))).whenComplete { _ in
                    channel.close(promise: nil)
                }
            } else {
                context.close(promise: nil)
            }
        default:
            close(code: CloseCode.protocolError, reason: "unknown opcode")
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        // More than maxQueuedBytes wait for a client that does not read: it is slow, not the node.
        if !context.channel.isWritable, state == .open { closeAsSlow("outbound buffer full") }
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        switch error {
        case NIOWebSocketError.invalidFrameLength, NIOWebSocketFrameAggregator.Error.accumulatedFrameSizeIsTooLarge:
            close(code: CloseCode.messageTooBig, reason: "message larger than \(limits.maxMessageSize) bytes")
        case is NIOWebSocketError, is NIOWebSocketFrameAggregator.Error:
            close(code: CloseCode.protocolError, reason: "WebSocket protocol error")
        default:
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        pingTask?.cancel()
        closeTimeout?.cancel()
        let wasClosedBefore = state == .closed
        state = .closed
        if closingCode.load(ordering: .relaxed) == 0 { closingCode.store(endCode, ordering: .relaxed) }
        // Layer messages for a client that is gone are of no use; what it sent before leaving is still handled.
        mailbox.removeAll { if case .layer = $0 { true } else { false } }
        heldDuringReplay = []
        if !wasClosedBefore { enqueue(.gone(code: endCode)) }
        if readPaused { readPaused = false }
        onClosed(self)
        context.fireChannelInactive()
    }

    // MARK: - Inbox

    func receive(_ delivery: Delivery) -> Bool {
        guard state == .open else { return false }
        if delivery.handlerName == PresenceEvent.handlerName {
            // The node's own event: to clients that asked for presence, a frame made once for all of them.
            guard wantsPresence, let frame = delivery.prepared(for: ObjectIdentifier(Self.presenceShape), { Self.presenceFrame(delivery.message) })
            else { return false }
            if !running, mailbox.isEmpty, handlerContext != nil { write(frame) } else { enqueue(.frame(frame)) }
            defer { inBatch = true }
            return !inBatch
        }
        if delivery.firstSight() {
            // Once per message and node, whichever path delivers it: forward rules, handlers, recovery.
            if let group = delivery.group { metrics.traffic.countGroupMessage(group) }
            observeLatency(delivery.message)
        }
        if let recovery, delivery.group == recovery.group {
            admitLive(delivery, direct: true)
        } else if let name = delivery.handlerName, let rule = rule(for: name), !running, mailbox.isEmpty, handlerContext != nil {
            guard let frame = frame(rule, delivery) else { return false }
            write(frame)
        } else {
            enqueue(.layer(delivery))
        }
        defer { inBatch = true }
        return !inBatch
    }

    func endOfBatch() {
        inBatch = false
        flush()
    }

    func messagesLost(reason: String) {
        guard state == .open else { return }
        enqueue(.lost(reason))
    }

    // MARK: - From the consumer's task, or a drain

    /// Writes a frame the consumer made; hops to the event loop. Frames sent before the upgrade completed
    /// (from `connect()`) wait in the mailbox and go out right after it.
    func post(_ frame: ByteBuffer) {
        eventLoop.execute { [self] in
            if handlerContext == nil, state == .open {
                mailbox.append(.frame(frame))
                return
            }
            write(frame)
            flush()
        }
    }

    /// Closes after the frames already written; from any thread.
    func requestClose(code: UInt16, reason: String) {
        eventLoop.execute { [self] in close(code: code, reason: reason) }
    }

    // MARK: - Internals

    private var wantsPresence: Bool { scope.query["presence"] == "1" }

    /// The key presence frames are kept under in a delivery.
    private static let presenceShape = ForwardRule(fields: [])

    /// `{"type": "join" | "leave", "channel", "user", "info", "node"}`.
    private static func presenceFrame(_ message: Message) -> ByteBuffer? {
        var object: OrderedDictionary<String, MessageValue> = ["type": message["event"] ?? "join"]
        for key in ["channel", "user", "info", "node"] { object[key] = message[key] ?? .null }
        return (try? ClientFrame.encode(object)).map { ServerFrame.text($0) }
    }

    /// The rule for a handler name; the last answer is kept, since a connection mostly gets one type.
    private func rule(for name: String) -> ForwardRule? {
        if let lastRule, lastRule.name == name { return lastRule.rule }
        let rule = forwardRule(named: name)
        lastRule = (name, rule)
        return rule
    }

    /// The connection's own rule when `connect()` chose rules, else the route's.
    private func forwardRule(named name: String) -> ForwardRule? {
        if let connectionRules { return connectionRules[name] }
        return route?.rules[name]
    }

    /// The rule's frame for a delivery, made by the first member that needs it and shared by the others.
    private func frame(_ rule: ForwardRule, _ delivery: Delivery) -> ByteBuffer? {
        delivery.prepared(for: ObjectIdentifier(rule)) { makeFrame(rule, delivery) }
    }

    private func makeFrame(_ rule: ForwardRule, _ delivery: Delivery) -> ByteBuffer? {
        // Made once per message and node: one count and at most one log line for the whole group.
        guard let frame = rule.frame(for: delivery) else {
            metrics.unencodable.increment()
            warnings.warn("dropped a layer message JSON cannot carry (bytes, NaN or infinity)", metadata: ["type": "\(delivery.message.type ?? "?")"])
            return nil
        }
        // A frame that alone would fill a client's outbound buffer would close every member as slow.
        guard frame.readableBytes <= limits.maxOutboundFrame else {
            metrics.oversized.increment()
            warnings.warn(
                "dropped a layer message too large for a client frame",
                metadata: ["type": "\(delivery.message.type ?? "?")", "bytes": "\(frame.readableBytes)", "limit": "\(limits.maxOutboundFrame)"]
            )
            return nil
        }
        return frame
    }

    private func enqueue(_ event: Event) {
        if mailbox.count >= limits.maxQueuedMessages, case .layer = event {
            closeAsSlow("more than \(limits.maxQueuedMessages) messages wait for the consumer")
            return
        }
        mailbox.append(event)
        startTaskIfNeeded()
    }

    private func startTaskIfNeeded() {
        guard !running, !mailbox.isEmpty, handlerContext != nil || state == .closed else { return }
        running = true
        let events = Array(mailbox)
        mailbox.removeAll()
        pendingClientFrames = 0
        Task { [self] in
            await process(events)
            eventLoop.execute { [self] in taskEnded() }
        }
    }

    private func taskEnded() {
        running = false
        if readPaused, state == .open {
            readPaused = false
            try? channel.syncOptions?.setOption(.autoRead, value: true)
            channel.read()
        }
        startTaskIfNeeded()
    }

    /// Runs in the mailbox task: consumer code, one event at a time.
    private func process(_ events: [Event]) async {
        for (index, event) in events.enumerated() {
            let closing = closingCode.load(ordering: .relaxed)
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
                eventLoop.execute { [self] in writtenSoFar(promise) }
            case .layer(let delivery):
                guard closing == 0, let consumer else { continue }
                await handle(delivery, consumer)
            case .lost(let reason):
                guard closing == 0 else { continue }
                post(ServerFrame.text(ClientFrame.error(.messagesLost, detail: reason)))
            case .frame(let frame):
                guard closing == 0 else { continue }
                post(frame)
            case .gone(let code):
                for case .written(let promise) in events[(index + 1)...] { promise.fail(ChannelError.ioOnClosedChannel) }
                if accepted { await consumer?.disconnect(code) }
                if let consumerContext {
                    for group in consumerContext.groups {
                        try? await layer.groupDiscard(group, channel: channelName)
                    }
                }
                if !channelName.isEmpty { await layer.deleteChannel(channelName) }
                self.consumer = nil
                self.consumerContext = nil
                return
            }
        }
    }

    private func handle(_ delivery: Delivery, _ consumer: ConsumerDriver) async {
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
        do {
            try await body()
        } catch let error as ChannelLayerError where error.code == .redis {
            // Redis unreachable is not the client's fault nor the consumer's: keep the connection (the layer
            // reconnects by itself), count it, and tell the client the truth about its message: not delivered
            // (sending it again cannot duplicate it), or handed to Redis without a confirmation.
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
        } catch {
            logger.error("consumer failed; closing the connection with 1011", metadata: ["error": "\(error)", "path": "\(scope.path)"])
            requestClose(code: CloseCode.internalError, reason: "internal error")
        }
    }

    private func observeLatency(_ message: Message) {
        guard let sentAt = message["sent_at"]?.double else { return }
        let seconds = WallClock.now() - sentAt
        if seconds >= 0 && seconds < 3600 { metrics.publishToDeliver.recordNanoseconds(Int64(seconds * 1e9)) }
    }

    /// Completes `promise` once everything written so far is on the socket.
    private func writtenSoFar(_ promise: EventLoopPromise<Void>) {
        guard state == .open, let handlerContext else { return promise.fail(ChannelError.ioOnClosedChannel) }
        flush()
        handlerContext.writeAndFlush(wrapOutboundOut(ByteBuffer()), promise: promise)
    }

    private func write(_ frame: ByteBuffer) {
        guard state == .open, handlerContext != nil else { return }
        // Small frames are copied together; the first is shared as is (a frame alone costs no copy).
        if unwritten == nil || frame.readableBytes > Self.gatherLimit {
            writeGathered()
            unwritten = frame
        } else {
            unwritten!.writeImmutableBuffer(frame)
        }
        unflushedFrames += 1
        if unwritten!.readableBytes > Self.gatherLimit { writeGathered() }
    }

    private func writeGathered() {
        guard let buffer = unwritten, let handlerContext else { return }
        unwritten = nil
        handlerContext.write(wrapOutboundOut(buffer), promise: nil)
    }

    private func flush() {
        guard unflushedFrames > 0, let handlerContext else { return }
        writeGathered()
        handlerContext.flush()
        metrics.messagesOut.increment(by: unflushedFrames)
        metrics.traffic.countOut(unflushedFrames)
        unflushedFrames = 0
    }

    /// Frames up to this size are gathered into one buffer per batch; larger ones are written as they are.
    static let gatherLimit = 16 * 1024

    private func closeAsSlow(_ why: String) {
        guard state == .open else { return }
        metrics.slowClientCloses.increment()
        close(code: CloseCode.slowClient, reason: "client too slow: \(why)", timeout: .seconds(2))
    }

    /// Sends a close frame after what was written, then closes the socket when the client answers or
    /// after `timeout` (a client that does not read may never take the frame).
    private func close(code: UInt16, reason: String, timeout: TimeAmount = .seconds(3)) {
        guard state == .open else { return }
        state = .closing
        endCode = code
        closingCode.store(code, ordering: .relaxed)
        guard let handlerContext else { return }
        flush()
        handlerContext.writeAndFlush(wrapOutboundOut(ServerFrame.close(code: code, reason: reason)), promise: nil)
        closeTimeout = eventLoop.scheduleTask(in: timeout) { [channel] in channel.close(promise: nil) }
    }

    private func checkAlive() {
        guard state == .open, let handlerContext else { return }
        if !heardSincePing {
            // Nothing, not even a pong, since the last ping: the peer is gone without a FIN.
            close(code: CloseCode.pingTimeout, reason: "no answer to ping", timeout: .seconds(1))
            return
        }
        heardSincePing = false
        flush()
        handlerContext.writeAndFlush(wrapOutboundOut(ServerFrame.make(.ping, payload: [UInt8]())), promise: nil)
    }
}
