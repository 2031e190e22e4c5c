import ChannelLayers
import ChannelsProtocol
import CoreMetrics
import Logging
import NIOCore
import PerMessageDeflate
import NIOWebSocket
import Synchronization

/// One client connection, a WebSocket or an event stream: a channel handler on its event loop, and the
/// layer's inbox for its channel.
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
/// Bounds: the socket's pending bytes (``ConnectionLimits/maxQueuedBytes``) and the mailbox
/// (``ConnectionLimits/maxQueuedMessages``); past either the client is closed with 4008 and counted. Past a
/// quarter of the bytes (NIO's write-buffer high water mark) the client is behind and its groups' publishers
/// wait for it, for a while (``PublishPressure``, `+Pressure`). While client frames wait for the consumer the socket is not read.
///
/// The decisions live in value types with no I/O, each tested alone: ``ClientFrameReader`` (the client's frames
/// from the socket's bytes), ``ConnectionLifecycle`` (the close handshake and the ping timeout), ``ConsumerMailbox``
/// (the consumer's events and its task), ``FrameBatch`` (gathered writes) and ``RecoveryState`` (`?recover=1`). This
/// type does the I/O; its extensions read the client's frames (`+Frames`), prepare the connection before the
/// upgrade (`+Preparing`), run the consumer (`+Consumer`), replay history (`+Recovery`) and write event streams
/// (`+EventStream`); permessage-deflate is ``PerMessageDeflate``'s. (This file is about 570 lines: the inbox and the
/// writes share one event loop's state, and splitting them would scatter that state's I/O.)
///
/// An event stream (``Scope/Transport/eventStream``) is the same connection with another output form: frames
/// become server-sent events (``ServerEvent``), a close is an `event: close` and the end of the response, a
/// ping is a comment; nothing is read from the client after its request.
///
/// Unchecked Sendable: everything mutable is touched on ``eventLoop`` only, except the consumer, its
/// context and the channel name, which the preparing task sets before the upgrade completes (the
/// upgrade's future orders those writes before any read on the loop) and the mailbox task uses one at a time.
final class ClientConnection: ChannelInboundHandler, ChannelInbox, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum Event {
        /// A client frame and its number on this connection (from 1), which error frames about it name.
        case text(String, number: Int)
        case binary([UInt8], number: Int)
        case layer(Delivery)
        /// A forward rule's frame for a layer message that came while the consumer had work: it waits its turn.
        case forwarded(ByteBuffer)
        case lost(String)
        /// A frame the node made (the recovery answer, presence).
        case frame(ByteBuffer)
        /// The socket closed: run `disconnect` and leave the groups.
        case gone(code: UInt16)
        /// Completes once every frame before it was written to the socket (a replay page went out).
        case written(EventLoopPromise<Void>)

        var isLayerMessage: Bool {
            switch self {
            case .layer, .forwarded: true
            default: false
            }
        }
    }

    // The stored properties are laid out for an idle connection's bytes: state most connections never have
    // (a refusal, a recovery, a timer) is kept out of line (``OutOfLine``), and the small fields sit together
    // at the end, where they pack instead of each taking a word of padding.

    /// What this connection's event loop shares with its other connections.
    let loop: LoopServices
    var eventLoop: any EventLoop { loop.eventLoop }
    /// Where the consumer's task runs: on ``eventLoop`` too.
    var executor: EventLoopTaskExecutor { loop.executor }
    let channel: any Channel
    let route: ConsumerRouter.Route?
    let scope: Scope
    /// `?presence=1`: only such connections are handed their rooms' joins and leaves.
    let takesPresenceEvents: Bool
    /// What the node's connections share.
    let environment: ConnectionEnvironment
    var layer: any InboxChannelLayer { environment.layer }
    var limits: ConnectionLimits { environment.limits }
    var metrics: NodeMetrics { environment.metrics }
    var logger: Logger { environment.logger }
    var warnings: WarningLimiter { environment.warnings }
    var pressure: PublishPressure { environment.pressure }

    /// Set by ``prepare()`` before the upgrade.
    var channelName = ""
    var consumer: (any ConsumerDriver)?
    var consumerContext: ConsumerContext?
    /// The token's `sub` when the layer counted this connection for it (given back when it ends).
    var countedUser: String?
    /// Close at once with this after the upgrade (a refused handshake or `connect()`).
    var refusal: (code: UInt16, reason: String)? {
        get { refusalStorage?.value }
        set { OutOfLine.assign(newValue, to: &refusalStorage) }
    }
    private var refusalStorage: OutOfLine<(code: UInt16, reason: String)>?
    /// `connect()` denied the handshake: answer with this HTTP status instead of upgrading.
    var denial: HandshakeRejection? {
        get { denialStorage?.value }
        set { OutOfLine.assign(newValue, to: &denialStorage) }
    }
    private var denialStorage: OutOfLine<HandshakeRejection>?
    /// Headers for the handshake's answer, from `connect()`.
    var handshakeHeaders: [(name: String, value: String)] = []
    /// The connection's own forward rules, from `connect()`, in place of the route's.
    var connectionRules: [String: ForwardRule]?

    // Event-loop state.
    var handlerContext: ChannelHandlerContext?
    var mailbox: ConsumerMailbox<Event>
    /// The history group this connection recovers, and what it got of it.
    var recovery: RecoveryState? {
        get { recoveryStorage?.value }
        set { OutOfLine.assign(newValue, to: &recoveryStorage) }
    }
    private var recoveryStorage: OutOfLine<RecoveryState>?
    /// That group's name, set once before the upgrade completes: the mailbox task reads it too.
    var recoveredGroup: String?
    /// Live messages of the recovered group that wait for the replay to end.
    var heldDuringReplay: [Delivery] = []
    /// The client's frames from the socket's bytes.
    var reader = ClientFrameReader()
    private var batch = FrameBatch()
    var rateLimiter: MessageRateLimiter
    private var closeTimeout: Scheduled<Void>? {
        get { closeTimeoutStorage?.value }
        set { OutOfLine.assign(newValue, to: &closeTimeoutStorage) }
    }
    private var closeTimeoutStorage: OutOfLine<Scheduled<Void>>?
    private var lastRule: (name: String, rule: ForwardRule?)?
    /// Client frames read so far.
    var clientFrames = 0
    /// The number of the client frame the consumer's code handles now, if it handles one (its task only).
    var handlingFrame: Int?
    /// For ``outboundBacklog()``: what NIO said when it was last asked.
    private var lastBacklog = 0
    /// The groups the consumer joined, for ``pressure``.
    /// (An array: a connection is in a group or two, where a set's storage took twice the bytes.)
    var memberGroups: [String] = []
    /// Behind and pressing: when the publishers are let go whether or not it caught up.
    var graceTimer: Scheduled<Void>? {
        get { graceTimerStorage?.value }
        set { OutOfLine.assign(newValue, to: &graceTimerStorage) }
    }
    private var graceTimerStorage: OutOfLine<Scheduled<Void>>?

    // Small fields, packed together.
    /// The connection's slot in its loop's ``PingWheel`` once the upgrade completed (-1: none).
    private var pingSlot: Int32 = -1
    var lifecycle = ConnectionLifecycle()
    /// Read by the mailbox task: the code the connection is closing with, 0 while open.
    let closingCode = Atomic<UInt16>(0)
    /// Served as server-sent events rather than WebSocket frames.
    let eventStream: Bool
    /// Whether `connect()` accepted: only then does the consumer get `disconnect`.
    var accepted = false
    /// permessage-deflate was agreed in the handshake: frames of `--compression-min-size` or more go compressed,
    /// and the client may compress its own.
    var deflate = false
    /// Between a drain's first delivery and the flush of what the drain wrote (when the loop's cork lifts).
    private var inBatch = false
    /// The client's bytes broke the protocol: the connection is closing and reads no more of them.
    var unreadable = false
    /// Reading the socket is held by code outside the mailbox (``ConnectionHandle/holdReading()``).
    var readingHeld = false
    /// For ``outboundBacklog()``: whether frames were flushed since it last asked NIO.
    private var flushedSinceBacklog = false
    /// Past the soft mark of bytes waiting (NIO's write-buffer high water mark), until back under its low one.
    var behind = false
    /// Behind, and holding ``memberGroups``' publishers until it catches up or ``graceTimer`` fires.
    var pressing = false

    /// Client frames waiting for the consumer before the socket stops being read.
    static let maxPendingClientFrames = 32

    init(channel: any Channel, route: ConsumerRouter.Route?, scope: Scope, environment: ConnectionEnvironment) {
        let limits = environment.limits
        self.environment = environment
        self.loop = environment.services(for: channel.eventLoop)
        self.channel = channel
        self.route = route
        self.scope = scope
        self.takesPresenceEvents = scope.query["presence"] == "1"
        self.eventStream = scope.transport == .eventStream
        self.rateLimiter = MessageRateLimiter(perSecond: limits.maxMessagesPerSecond, burst: limits.messageBurst)
        // Forwarded frames are shared with every member on the node, so a client's own cost is small; the bound
        // is for a consumer stuck for good, and leaves room for a batch of its own client frames each echoed back.
        self.mailbox = ConsumerMailbox(
            maxQueued: limits.maxQueuedMessages, maxClientFrames: Self.maxPendingClientFrames, maxForwardedBytes: limits.maxForwardedBytes
        )
    }

    // MARK: - Channel handler

    func handlerAdded(context: ChannelHandlerContext) {
        handlerContext = context
        if let refusal {
            // A refused consumer gets no disconnect, but its channel and memberships go when the socket closes.
            // A close asked before the upgrade completed (the consumer's own, a bound passed) is sent now.
            if lifecycle.isOpen {
                close(code: refusal.code, reason: refusal.reason)
            } else {
                writeCloseFrame(code: refusal.code, reason: refusal.reason, timeout: .seconds(3))
            }
            return
        }
        pingSlot = Int32(loop.pingWheel.add(self))
        startTaskIfNeeded()
        continueReplay()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            caughtUpReading()
        } else {
            fellBehind()
        }
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if pingSlot >= 0 {
            loop.pingWheel.remove(self, slot: Int(pingSlot))
            pingSlot = -1
        }
        closeTimeout?.cancel()
        behind = false
        stopPressing()
        let wasClosedBefore = lifecycle.socketClosed()
        if closingCode.load(ordering: .relaxed) == 0 { closingCode.store(lifecycle.endCode, ordering: .relaxed) }
        // Layer messages for a client that is gone are of no use; what it sent before leaving is still handled.
        mailbox.dropLayerMessages { $0.isLayerMessage }
        heldDuringReplay = []
        if !wasClosedBefore { enqueue(.gone(code: lifecycle.endCode)) }
        mailbox.socketClosed()
        environment.onClosed(self)
        context.fireChannelInactive()
    }

    // MARK: - Inbox

    func receive(_ delivery: Delivery) -> Bool {
        guard lifecycle.isOpen else { return false }
        if delivery.handlerName == PresenceEvent.handlerName {
            // The node's own event: to clients that asked for presence, a frame made once for all of them.
            // Layers outside this package may not honour `takesPresenceEvents`.
            guard takesPresenceEvents, let plain = delivery.prepared(for: ObjectIdentifier(ServerFrame.presenceShape), { ServerFrame.presenceEvent(delivery.message) })
            else { return false }
            let frame = asSent(plain, as: ServerFrame.presenceShape, event: "presence", in: delivery)
            if mailbox.isIdle, handlerContext != nil { write(frame) } else { enqueue(.frame(frame)) }
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
        } else if !forward(delivery) {
            return false
        }
        defer { inBatch = true }
        return !inBatch
    }

    /// Writes a layer message's frame at once when a forward rule makes it and nothing waits ahead of it; a
    /// rule's frame that must wait its turn goes to the mailbox made, others go there as messages. `false` when
    /// the rule could not make a frame (dropped, counted).
    func forward(_ delivery: Delivery) -> Bool {
        guard let name = delivery.handlerName, let rule = rule(for: name), handlerContext != nil else {
            enqueue(.layer(delivery))
            return true
        }
        guard let frame = frame(rule, delivery) else { return false }
        if mailbox.isIdle {
            write(frame)
        } else if mailbox.append(forwarded: .forwarded(frame), bytes: frame.readableBytes) {
            startTaskIfNeeded()
        } else {
            closeAsSlow("more than \(limits.maxForwardedBytes) bytes of messages wait behind the consumer")
        }
        return true
    }

    func endOfBatch() {
        // Corked, the connection stays in its batch: later drains' frames join the same flush.
        if batch.frames > 0, let cork = loop.cork {
            cork.add(self)
            return
        }
        inBatch = false
        flush()
    }

    /// The loop's cork lifted: flushes what the drains since ``endOfBatch()`` wrote.
    func corkLifted() {
        inBatch = false
        flush()
    }

    func messagesLost(reason: String) {
        guard lifecycle.isOpen else { return }
        enqueue(.lost(reason))
    }

    // MARK: - From the consumer's task, or a drain

    /// Writes forward-rule frames that waited in the mailbox, in one hop and one flush (they are made only once
    /// the upgrade completed).
    func post(_ frames: [ByteBuffer]) {
        onLoop { [self] in
            guard handlerContext != nil else { return }
            for frame in frames { write(frame) }
            flush()
        }
    }

    /// Writes a frame the consumer made; hops to the event loop. Frames sent before the upgrade completed
    /// (from `connect()`) wait in the mailbox and go out right after it.
    func post(_ frame: ByteBuffer) {
        onLoop { [self] in
            if handlerContext == nil, lifecycle.isOpen {
                _ = mailbox.append(.frame(frame), isLayerMessage: false)
                return
            }
            write(frame)
            flush()
        }
    }

    /// Closes after the frames already written; from any thread.
    func requestClose(code: UInt16, reason: String) {
        onLoop { [self] in close(code: code, reason: reason) }
    }

    /// Runs `body` on the event loop: at once from the consumer's task (it runs there, ``EventLoopTaskExecutor``),
    /// in a hop from anywhere else.
    func onLoop(_ body: @escaping @Sendable () -> Void) {
        if eventLoop.inEventLoop { body() } else { eventLoop.execute(body) }
    }

    /// Stops reading the client until ``releaseReading()``, whatever the mailbox does: for consumers that pass
    /// client frames on without waiting (a bridge whose worker's window is full). From any thread.
    func holdReading() {
        eventLoop.execute { [self] in
            guard !readingHeld else { return }
            readingHeld = true
            try? channel.syncOptions?.setOption(.autoRead, value: false)
        }
    }

    /// Reads the client again after ``holdReading()`` (unless the mailbox holds it itself). From any thread.
    func releaseReading() {
        eventLoop.execute { [self] in
            guard readingHeld else { return }
            readingHeld = false
            guard lifecycle.isOpen, !mailbox.readingPaused else { return }
            try? channel.syncOptions?.setOption(.autoRead, value: true)
            channel.read()
        }
    }

    // MARK: - The node's outbound budget

    /// Bytes waiting to be written to the client, and whether the connection is still open; on the event loop.
    /// NIO is asked only when something was flushed since, or bytes were waiting then: an idle connection costs nothing.
    func outboundBacklog() -> (bytes: Int, open: Bool) {
        if flushedSinceBacklog || lastBacklog > 0 {
            flushedSinceBacklog = false
            lastBacklog = (try? channel.syncOptions?.getOption(.bufferedWritableBytes)) ?? 0
        }
        return (lastBacklog + batch.pendingBytes, lifecycle.isOpen)
    }

    /// Closes with 4008: the node's outbound budget is spent and this backlog is among the largest. From any thread.
    func closeOverBudget(reason: String) {
        eventLoop.execute { [self] in
            guard lifecycle.isOpen else { return }
            metrics.outboundBudgetCloses.increment()
            close(code: CloseCode.slowClient, reason: reason, timeout: .seconds(2))
        }
    }

    // MARK: - Frames of layer messages

    /// The rule for a handler name; the last answer is kept, since a connection mostly gets one type.
    func rule(for name: String) -> ForwardRule? {
        if let lastRule, lastRule.name == name { return lastRule.rule }
        let rule = forwardRule(named: name)
        lastRule = (name, rule)
        return rule
    }

    /// The connection's own rule when `connect()` chose rules, else the route's.
    func forwardRule(named name: String) -> ForwardRule? {
        if let connectionRules { return connectionRules[name] }
        return route?.rules[name]
    }

    /// The rule's frame for a delivery, made by the first member that needs it and shared by the others; its
    /// compressed form and its event-stream form too, each made once as well.
    func frame(_ rule: ForwardRule, _ delivery: Delivery) -> ByteBuffer? {
        guard let plain = delivery.prepared(for: ObjectIdentifier(rule), { makeFrame(rule, delivery) }) else { return nil }
        return asSent(plain, as: rule, event: nil, in: delivery)
    }

    /// A shared frame as this connection sends it, each form made once per delivery and kept beside the plain
    /// one: an event (named `event`, with the message's history position as its id) on an event stream;
    /// compressed when permessage-deflate was agreed and the frame is large enough.
    private func asSent(_ plain: ByteBuffer, as rule: ForwardRule, event name: String?, in delivery: Delivery) -> ByteBuffer {
        if eventStream {
            // The id is the recovered group's position: a message of another history group (a consumer in two)
            // goes without one, made for this stream alone, so that Last-Event-ID never names the wrong group.
            if name == nil, delivery.position != nil, delivery.group != recoveredGroup {
                return ServerFrame.payload(of: plain).map { ServerEvent.event(data: $0.readableBytesView) } ?? plain
            }
            return delivery.prepared(for: ObjectIdentifier(rule.eventStream)) {
                ServerFrame.payload(of: plain).map { payload in
                    let id = name == nil ? delivery.position.map { ServerEvent.id(epoch: $0.epoch, offset: $0.offset) } : nil
                    return ServerEvent.event(name: name, id: id, data: payload.readableBytesView)
                }
            } ?? plain
        }
        guard deflate, plain.readableBytes >= limits.compressionMinSize else { return plain }
        return delivery.prepared(for: ObjectIdentifier(rule.deflated)) { ServerFrame.deflated(plain) ?? plain } ?? plain
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

    // MARK: - The mailbox

    func enqueue(_ event: Event) {
        guard mailbox.append(event, isLayerMessage: event.isLayerMessage) else {
            closeAsSlow("more than \(limits.maxQueuedMessages) messages wait for the consumer")
            return
        }
        startTaskIfNeeded()
    }

    func startTaskIfNeeded() {
        guard handlerContext != nil || lifecycle.state == .closed, let events = mailbox.startTask() else { return }
        Task(executorPreference: executor) { [self] in
            await process(events)
            onLoop { [self] in taskEnded() }
        }
    }

    private func taskEnded() {
        if mailbox.taskEnded(open: lifecycle.isOpen), !readingHeld {
            try? channel.syncOptions?.setOption(.autoRead, value: true)
            channel.read()
        }
        startTaskIfNeeded()
    }

    // MARK: - Writing

    /// Completes `promise` once everything written so far is on the socket.
    func writtenSoFar(_ promise: EventLoopPromise<Void>) {
        guard lifecycle.isOpen, let handlerContext else { return promise.fail(ChannelError.ioOnClosedChannel) }
        flush()
        handlerContext.writeAndFlush(wrapOutboundOut(ByteBuffer()), promise: promise)
    }

    func write(_ frame: ByteBuffer) {
        guard lifecycle.isOpen, let handlerContext else { return }
        var frame = frame
        // Frames made for this connection alone (the consumer's, the node's own); a group's come in their form already.
        if eventStream {
            if !ServerEvent.isEvent(frame) {
                guard let event = ServerEvent.converting(frame: frame, allocator: handlerContext.channel.allocator) else {
                    return droppedFromEventStream(frame)
                }
                frame = event
            }
        } else if deflate, frame.readableBytes >= limits.compressionMinSize, let compressed = ServerFrame.deflated(frame, allocator: handlerContext.channel.allocator) {
            frame = compressed
        }
        let ready = batch.add(frame)
        if let first = ready.first { handlerContext.write(wrapOutboundOut(first), promise: nil) }
        // The first write may have filled the buffer and closed the client: nothing goes after a close frame.
        if let second = ready.second, lifecycle.isOpen { handlerContext.write(wrapOutboundOut(second), promise: nil) }
    }

    func flush() {
        guard batch.frames > 0, let handlerContext else { return }
        let (buffer, frames) = batch.flush()
        if let buffer { handlerContext.write(wrapOutboundOut(buffer), promise: nil) }
        handlerContext.flush()
        flushedSinceBacklog = true
        metrics.messagesOut.increment(by: frames)
        metrics.traffic.countOut(frames)
        if behind { closeIfFull() }
    }

    // MARK: - Closing

    func closeAsSlow(_ why: String) {
        guard lifecycle.isOpen else { return }
        metrics.slowClientCloses.increment()
        close(code: CloseCode.slowClient, reason: "client too slow: \(why)", timeout: .seconds(2))
    }

    /// Sends a close frame after what was written, then closes the socket when the client answers or
    /// after `timeout` (a client that does not read may never take the frame).
    func close(code: UInt16, reason: String, timeout: TimeAmount = .seconds(3)) {
        guard lifecycle.close(code: code) else { return }
        closingCode.store(code, ordering: .relaxed)
        stopPressing()
        guard handlerContext != nil else {
            // Before the upgrade completed: the close frame goes out as soon as it does.
            refusal = (code, reason)
            return
        }
        writeCloseFrame(code: code, reason: reason, timeout: timeout)
    }

    private func writeCloseFrame(code: UInt16, reason: String, timeout: TimeAmount) {
        guard let handlerContext else { return }
        flush()
        if eventStream {
            // No close handshake: the response ends with the stream (a browser reconnects unless told otherwise).
            let channel = handlerContext.channel
            handlerContext.writeAndFlush(wrapOutboundOut(ServerEvent.close(code: code, reason: reason))).whenComplete { _ in channel.close(promise: nil) }
        } else {
            handlerContext.writeAndFlush(wrapOutboundOut(ServerFrame.close(code: code, reason: reason)), promise: nil)
        }
        closeTimeout = eventLoop.scheduleTask(in: timeout) { [channel] in channel.close(promise: nil) }
    }

    /// Pings a quiet client, or closes one that did not answer the last ping; from its loop's ``PingWheel``.
    func checkAlive() {
        guard let handlerContext else { return }
        if eventStream {
            // A stream's client never answers: a comment keeps proxies from timing it out, and a client that
            // went away without a FIN is found when the bytes cannot be delivered.
            guard lifecycle.isOpen else { return }
            flush()
            handlerContext.writeAndFlush(wrapOutboundOut(ServerEvent.keepAlive), promise: nil)
            return
        }
        switch lifecycle.pingDue() {
        case .none:
            break
        case .timedOut:
            // Nothing, not even a pong, since the last ping: the peer is gone without a FIN.
            close(code: CloseCode.pingTimeout, reason: "no answer to ping", timeout: .seconds(1))
        case .ping:
            flush()
            handlerContext.writeAndFlush(wrapOutboundOut(ServerFrame.make(.ping, payload: [UInt8]())), promise: nil)
        }
    }
}
