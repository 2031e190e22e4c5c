import ChannelLayers
import ChannelsProtocol
import Foundation
import Logging
import NIOCore
import NIOEmbedded
import NIOWebSocket
import OrderedCollections
import Synchronization
import Testing

@testable import ChannelsNode

/// What an engine test's consumer saw, shared with the test.
final class ConsumerLog: Sendable {
    let disconnects = Mutex<[UInt16]>([])
    let handled = Mutex<[Int64]>([])
    let texts = Mutex<[String]>([])
    /// While set, the code handler waits for the test (to keep the mailbox task busy).
    let gate = Mutex<CheckedContinuation<Void, Never>?>(nil)
    let gated = Atomic<Bool>(false)

    static let shared = Mutex<ConsumerLog?>(nil)
}

/// The test consumer: joins `chat_room`; `fwd.message` is a forward rule (`{"n": ...}`), `code.message` runs
/// handler code that answers `{"handled": n}`; a text frame is echoed.
final class EngineTestConsumer: WebSocketConsumer {
    static var forwardRules: [String: ForwardRule] { ["fwd_message": ForwardRule(fields: ["n"])] }
    static var messageHandlers: [String: Handler] { ["code_message": EngineTestConsumer.code] }
    let context: ConsumerContext
    let log: ConsumerLog

    init(context: ConsumerContext) {
        self.context = context
        self.log = ConsumerLog.shared.withLock { $0! }
    }

    func connect() async throws -> ConnectDecision {
        try await context.groupAdd("chat_room")
        if context.scope.query["close"] == "1" { context.close(code: 4000, reason: "closed in connect") }
        return .accept
    }

    func receive(text: String) async throws {
        log.texts.withLock { $0.append(text) }
        context.send(text: "echo:" + text)
    }

    func code(_ message: Message) async throws {
        if log.gated.load(ordering: .relaxed) {
            await withCheckedContinuation { continuation in log.gate.withLock { $0 = continuation } }
        }
        let n = message["n"]?.int ?? -1
        log.handled.withLock { $0.append(n) }
        // A binary answer, for the event-stream tests (a stream cannot carry it).
        if n == -2 { context.send(binary: [1, 2, 3]) }
        try context.send(json: ["handled": .int(n)])
    }

    func disconnect(code: UInt16) async {
        log.disconnects.withLock { $0.append(code) }
    }
}

/// A frame the node wrote, parsed back.
struct WrittenFrame: Equatable {
    let opcode: UInt8
    let payload: [UInt8]
    var text: String { String(decoding: payload, as: UTF8.self) }
    var closeCode: UInt16? { opcode == 0x8 && payload.count >= 2 ? UInt16(payload[0]) << 8 | UInt16(payload[1]) : nil }
    var closeReason: String { String(decoding: payload.dropFirst(2), as: UTF8.self) }
    var json: [String: Any]? { try? JSONSerialization.jsonObject(with: Data(payload)) as? [String: Any] }
}

/// One ClientConnection on NIO's testing channel, with an in-memory layer: no socket, no process.
struct ConnectionHarness {
    let channel: NIOAsyncTestingChannel
    let connection: ClientConnection
    let layer: InMemoryChannelLayer
    let log: ConsumerLog
    let metrics: NodeMetrics

    static func make(
        query: String = "", limits: ConnectionLimits = ConnectionLimits(), pingInterval: Duration = .seconds(30), runLoopBeforeUpgrade: Bool = false,
        transport: Scope.Transport = .webSocket, flushDelay: Duration = .zero,
        layer: InMemoryChannelLayer = InMemoryChannelLayer(configuration: .init(history: HistoryConfiguration(patterns: ["chat_*"])))
    ) async throws -> ConnectionHarness {
        let log = ConsumerLog()
        ConsumerLog.shared.withLock { $0 = log }
        let channel = NIOAsyncTestingChannel()
        var router = ConsumerRouter()
        router.add("/ws/<room>/", EngineTestConsumer.self)
        let (route, parameters) = try #require(router.match("/ws/room/"))
        let metrics = NodeMetrics()
        let connection = ClientConnection(
            channel: channel, route: route, scope: Scope(path: "/ws/room/", parameters: parameters, query: Scope.parseQuery(query[...]), transport: transport),
            environment: ConnectionEnvironment(
                layer: layer, limits: limits, metrics: metrics, logger: Logger(label: "test"), warnings: WarningLimiter(logger: Logger(label: "test")),
                pingInterval: pingInterval, flushDelay: flushDelay, pressure: PublishPressure(nodeID: "test", grace: limits.slowReaderGrace, metrics: metrics), onClosed: { _ in }
            )
        )
        await connection.prepare()
        // What connect() asked of the loop happens before the upgrade completes.
        if runLoopBeforeUpgrade { await channel.testingEventLoop.run() }
        try await channel.pipeline.addHandler(connection)
        return ConnectionHarness(channel: channel, connection: connection, layer: layer, log: log, metrics: metrics)
    }

    /// Runs the loop (tasks hop onto it) until `count` frames were written, or 5 s pass; returns the frames
    /// and how many writes (buffers) carried them.
    func written(atLeast count: Int, within timeout: Duration = .seconds(5)) async throws -> (frames: [WrittenFrame], writes: Int) {
        var frames: [WrittenFrame] = []
        var writes = 0
        let deadline = ContinuousClock.now + timeout
        while frames.count < count, ContinuousClock.now < deadline {
            await channel.testingEventLoop.run()
            while var buffer = try await channel.readOutbound(as: ByteBuffer.self) {
                if buffer.readableBytes == 0 { continue }
                writes += 1
                frames += Self.parse(&buffer)
            }
            if frames.count < count { try await Task.sleep(for: .milliseconds(2)) }
        }
        return (frames, writes)
    }

    /// Runs the loop for a moment and returns what was written meanwhile.
    func settle() async throws -> [WrittenFrame] {
        var frames: [WrittenFrame] = []
        for _ in 0..<20 {
            await channel.testingEventLoop.run()
            while var buffer = try await channel.readOutbound(as: ByteBuffer.self) { frames += Self.parse(&buffer) }
            try await Task.sleep(for: .milliseconds(2))
        }
        return frames
    }

    static func parse(_ buffer: inout ByteBuffer) -> [WrittenFrame] {
        var frames: [WrittenFrame] = []
        while let first = buffer.readInteger(as: UInt8.self), let second = buffer.readInteger(as: UInt8.self) {
            var length = Int(second & 0x7f)
            if length == 126 { length = Int(buffer.readInteger(as: UInt16.self) ?? 0) }
            if length == 127 { length = Int(buffer.readInteger(as: UInt64.self) ?? 0) }
            frames.append(WrittenFrame(opcode: first & 0x0f, payload: buffer.readBytes(length: length) ?? []))
        }
        return frames
    }

    /// A client frame, masked as clients must, as the socket's bytes.
    func send(_ opcode: WebSocketOpcode, _ bytes: [UInt8], masked: Bool = true) async throws {
        try await channel.writeInbound(Self.encode(opcode, bytes, masked: masked))
    }

    /// A client frame's bytes (RFC 6455 5.2).
    static func encode(_ opcode: WebSocketOpcode, _ bytes: [UInt8], fin: Bool = true, rsv1: Bool = false, masked: Bool = true) -> ByteBuffer {
        var frame = ByteBuffer()
        frame.writeInteger(UInt8(fin ? 0x80 : 0) | UInt8(rsv1 ? 0x40 : 0) | UInt8(webSocketOpcode: opcode))
        let mask: UInt8 = masked ? 0x80 : 0
        switch bytes.count {
        case ..<126: frame.writeInteger(mask | UInt8(bytes.count))
        case ..<65536:
            frame.writeInteger(mask | 126)
            frame.writeInteger(UInt16(bytes.count))
        default:
            frame.writeInteger(mask | 127)
            frame.writeInteger(UInt64(bytes.count))
        }
        var data = ByteBuffer(bytes: bytes)
        if masked {
            let key = WebSocketMaskingKey.random()
            frame.writeBytes(key)
            data.webSocketMask(key)
        }
        frame.writeBuffer(&data)
        return frame
    }

    func send(text: String) async throws { try await send(.text, Array(text.utf8)) }

    func publish(_ type: String, _ n: Int64, to group: String = "chat_room") async throws {
        try await layer.groupSend(["type": .string(type), "n": .int(n)], to: group)
    }
}

/// Whether `condition` holds within `timeout`, asked every 5 ms.
func eventually(timeout: Duration = .seconds(5), _ condition: () async throws -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + timeout
    repeat {
        if (try? await condition()) == true { return true }
        try? await Task.sleep(for: .milliseconds(5))
    } while ContinuousClock.now < deadline
    return false
}

/// Keeps what is written in the channel's pending writes, as a socket whose client does not read.
final class FlushHolder: ChannelOutboundHandler, Sendable {
    typealias OutboundIn = ByteBuffer
    func flush(context: ChannelHandlerContext) {}
}

/// Turns the channel unwritable from inside the first write that reaches it, as NIO does when a write passes
/// the high water mark: the connection hears it while it is still writing.
final class WritabilityFlipper: ChannelOutboundHandler, @unchecked Sendable {
    typealias OutboundIn = ByteBuffer
    private var flipped = false
    let channel: NIOAsyncTestingChannel

    init(channel: NIOAsyncTestingChannel) { self.channel = channel }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        context.write(data, promise: promise)
        guard !flipped else { return }
        flipped = true
        channel.isWritable = false
        context.pipeline.fireChannelWritabilityChanged()
    }
}

@Suite(.serialized) struct ClientConnectionTests {
    @Test func forwardedMessagesOfOneBatchAreOneWrite() async throws {
        let harness = try await ConnectionHarness.make()
        // One batch, as the dispatcher hands it over: three deliveries, then the end of the batch.
        let connection = harness.connection
        try await harness.channel.testingEventLoop.submit {
            for n in 1...3 {
                let delivery = Delivery(["type": "fwd.message", "n": .int(Int64(n))], group: "chat_room", position: HistoryPosition(offset: Int64(n), epoch: "E"))
                _ = connection.receive(delivery)
            }
            connection.endOfBatch()
        }.get()
        let (frames, writes) = try await harness.written(atLeast: 3)
        #expect(frames.map { $0.json?["n"] as? Int } == [1, 2, 3])
        #expect(writes == 1, "one gathered write and one flush for the batch, not one per frame")
        // Offsets of the history group ride along.
        #expect(frames.map { $0.json?["offset"] as? Int } == [1, 2, 3])
    }

    @Test func aCorkedLoopFlushesTheBatchesOfItsDelayTogether() async throws {
        let harness = try await ConnectionHarness.make(flushDelay: .microseconds(50))
        let connection = harness.connection
        let loop = harness.channel.testingEventLoop
        // Two drains within the delay: the second finds the connection still in its batch.
        let firstSawABatch = try await loop.submit { () -> Bool in
            let first = connection.receive(Delivery(["type": "fwd.message", "n": 1]))
            connection.endOfBatch()
            return first
        }.get()
        let secondJoined = try await loop.submit { () -> Bool in
            let second = connection.receive(Delivery(["type": "fwd.message", "n": 2]))
            if second { connection.endOfBatch() }
            return !second
        }.get()
        #expect(firstSawABatch && secondJoined, "the second drain's delivery joins the corked batch")
        #expect(try await harness.channel.readOutbound(as: ByteBuffer.self) == nil, "nothing is flushed before the delay")
        await loop.advanceTime(by: .microseconds(50))
        let (frames, writes) = try await harness.written(atLeast: 2)
        #expect(frames.map { $0.json?["n"] as? Int } == [1, 2])
        #expect(writes == 1, "both drains' frames went out in one flush")
        // The cork lifted: the next drain starts a batch of its own and waits for its own delay.
        let third = try await loop.submit { () -> Bool in
            let third = connection.receive(Delivery(["type": "fwd.message", "n": 3]))
            connection.endOfBatch()
            return third
        }.get()
        #expect(third)
        #expect(try await harness.channel.readOutbound(as: ByteBuffer.self) == nil)
        await loop.advanceTime(by: .microseconds(50))
        #expect(try await harness.written(atLeast: 1).frames.map { $0.json?["n"] as? Int } == [3])
    }

    @Test func aCloseAskedBeforeTheUpgradeCompletedIsSentWhenItDoes() async throws {
        let harness = try await ConnectionHarness.make(query: "close=1", runLoopBeforeUpgrade: true)
        let (frames, _) = try await harness.written(atLeast: 1)
        #expect(frames.first?.closeCode == 4000 && frames.first?.closeReason == "closed in connect")
    }

    @Test func handlerCodeAndForwardRulesKeepArrivalOrder() async throws {
        let harness = try await ConnectionHarness.make()
        harness.log.gated.store(true, ordering: .relaxed)
        try await harness.publish("code.message", 1)
        // The handler holds the mailbox task: these may not overtake it although a rule could write them at once.
        try await harness.publish("fwd.message", 2)
        try await harness.publish("fwd.message", 3)
        #expect(try await harness.settle().isEmpty)
        harness.log.gated.store(false, ordering: .relaxed)
        harness.log.gate.withLock { $0?.resume(); $0 = nil }
        let (frames, _) = try await harness.written(atLeast: 3)
        #expect(frames.map { ($0.json?["handled"] ?? $0.json?["n"]) as? Int } == [1, 2, 3])
        // The task ended: the next forwarded message is written at once again.
        try await harness.publish("fwd.message", 4)
        #expect(try await harness.written(atLeast: 1).frames.first?.json?["n"] as? Int == 4)
    }

    @Test func forwardedFramesWaitingBehindBusyConsumerCodeAreBoundedByBytesNotCount() async throws {
        // A consumer awaiting something (Redis, under load) while its room's messages come: hundreds of them
        // wait behind it, more than --max-queued-messages, and the reading client is not closed.
        let harness = try await ConnectionHarness.make(limits: ConnectionLimits(maxQueuedMessages: 16))
        harness.log.gated.store(true, ordering: .relaxed)
        try await harness.publish("code.message", 0)
        for n in 1...500 { try await harness.publish("fwd.message", Int64(n)) }
        #expect(try await harness.settle().isEmpty)
        harness.log.gated.store(false, ordering: .relaxed)
        harness.log.gate.withLock { $0?.resume(); $0 = nil }
        let (frames, _) = try await harness.written(atLeast: 501)
        #expect(frames.map { ($0.json?["handled"] ?? $0.json?["n"]) as? Int } == Array(0...500), "in arrival order, none lost")
        #expect(harness.connection.closingCode.load(ordering: .relaxed) == 0)
    }

    @Test func forwardedFramesPastTheByteBoundCloseTheClientWith4008() async throws {
        // Forwarded frames may hold four times --max-queued-bytes: 20 of 4,000 bytes pass 64 KiB.
        let harness = try await ConnectionHarness.make(limits: ConnectionLimits(maxQueuedBytes: 16 * 1024))
        harness.log.gated.store(true, ordering: .relaxed)
        try await harness.publish("code.message", 0)
        let text = String(repeating: "x", count: 4000)
        for _ in 1...20 { try await harness.layer.groupSend(["type": "fwd.message", "n": .string(text)], to: "chat_room") }
        harness.log.gated.store(false, ordering: .relaxed)
        harness.log.gate.withLock { $0?.resume(); $0 = nil }
        let (frames, _) = try await harness.written(atLeast: 1)
        let close = try #require(frames.first { $0.opcode == 0x8 })
        #expect(close.closeCode == 4008)
        #expect(close.closeReason.contains("bytes of messages wait behind the consumer"))
    }

    @Test func aMailboxPastItsBoundClosesTheClientWith4008() async throws {
        let harness = try await ConnectionHarness.make(limits: ConnectionLimits(maxQueuedMessages: 2))
        harness.log.gated.store(true, ordering: .relaxed)
        for n in 1...4 { try await harness.publish("code.message", Int64(n)) }
        let (frames, _) = try await harness.written(atLeast: 1)
        let close = try #require(frames.first { $0.opcode == 0x8 })
        #expect(close.closeCode == 4008)
        #expect(close.closeReason.contains("more than 2 messages wait for the consumer"))
        harness.log.gate.withLock { $0?.resume(); $0 = nil }
        harness.log.gated.store(false, ordering: .relaxed)
    }

    @Test func theClientsCloseIsAnsweredWithItsCodeAndTheConsumerHearsIt() async throws {
        let harness = try await ConnectionHarness.make()
        try await harness.send(.connectionClose, [0x10, 0xe1])  // 4321
        let (frames, _) = try await harness.written(atLeast: 1)
        #expect(frames.first?.closeCode == 4321)
        _ = try await harness.settle()
        #expect(!harness.channel.isActive, "closed once the answer was written")
        #expect(harness.log.disconnects.withLock { $0 } == [4321])
        // It left its group: a message to the room reaches nobody.
        #expect(try await harness.layer.members(of: "chat_room").isEmpty)
    }

    @Test func consumerCodeRunsOnTheConnectionsEventLoop() async throws {
        let harness = try await ConnectionHarness.make()
        try await harness.send(text: "hello")
        // Nothing runs the testing loop yet: the consumer's task waits for it (on Swift's global executor it had
        // run by itself).
        try await Task.sleep(for: .milliseconds(200))
        #expect(harness.log.texts.withLock { $0 }.isEmpty)
        let (frames, _) = try await harness.written(atLeast: 1)
        #expect(harness.log.texts.withLock { $0 } == ["hello"])
        #expect(frames.map(\.text) == ["echo:hello"])
    }

    @Test func aClientSilentForTwoPingIntervalsIsClosedWith4408() async throws {
        let harness = try await ConnectionHarness.make(pingInterval: .seconds(30))
        await harness.channel.testingEventLoop.advanceTime(by: .seconds(30))
        var (frames, _) = try await harness.written(atLeast: 1)
        #expect(frames.map(\.opcode) == [0x9], "a ping")
        await harness.channel.testingEventLoop.advanceTime(by: .seconds(30))
        (frames, _) = try await harness.written(atLeast: 1)
        #expect(frames.first?.closeCode == CloseCode.pingTimeout)
    }

    @Test func aPongKeepsAClientAlive() async throws {
        let harness = try await ConnectionHarness.make(pingInterval: .seconds(30))
        for _ in 0..<3 {
            await harness.channel.testingEventLoop.advanceTime(by: .seconds(30))
            try await harness.send(.pong, [])
        }
        let frames = try await harness.settle()
        #expect(frames.map(\.opcode) == [0x9, 0x9, 0x9], "pings, and no close")
    }

    @Test func anUnmaskedFrameIsAProtocolError() async throws {
        let harness = try await ConnectionHarness.make()
        try await harness.send(.text, Array("hi".utf8), masked: false)
        #expect(try await harness.written(atLeast: 1).frames.first?.closeCode == CloseCode.protocolError)
    }

    @Test func clientFramesReachTheConsumerInOrder() async throws {
        let harness = try await ConnectionHarness.make()
        for index in 0..<5 { try await harness.send(text: "m\(index)") }
        let (frames, _) = try await harness.written(atLeast: 5)
        #expect(frames.map(\.text) == (0..<5).map { "echo:m\($0)" })
    }

    @Test func recoveryReplaysWhatWasMissedThenLiveOnceInOrder() async throws {
        let layer = InMemoryChannelLayer(configuration: .init(history: HistoryConfiguration(patterns: ["chat_*"])))
        for n in 1...5 { try await layer.groupSend(["type": "fwd.message", "n": .int(Int64(n))], to: "chat_room") }
        let epoch = try #require(try await layer.history(of: "chat_room", after: nil, limit: 1)?.top.epoch)
        let harness = try await ConnectionHarness.make(query: "recover=1&epoch=\(epoch)&offset=2", layer: layer)
        try await harness.publish("fwd.message", 6)
        let (frames, _) = try await harness.written(atLeast: 5)
        #expect(frames.first?.json?["type"] as? String == "recovery" && frames.first?.json?["recovered"] as? Bool == true)
        #expect(frames.dropFirst().map { $0.json?["offset"] as? Int } == [3, 4, 5, 6])
    }

    @Test func aMemberThatLeftMidBatchGetsNothingMore() async throws {
        let harness = try await ConnectionHarness.make()
        try await harness.publish("fwd.message", 1)
        _ = try await harness.written(atLeast: 1)
        try await harness.channel.close()
        _ = try await harness.settle()
        // A delivery already on its way when the socket closed is refused, not written.
        let late = try await harness.channel.testingEventLoop.submit { harness.connection.receive(Delivery(["type": "fwd.message", "n": 2], group: "chat_room")) }.get()
        #expect(!late)
        #expect(try await harness.settle().isEmpty)
        #expect(harness.log.disconnects.withLock { $0 } == [CloseCode.abnormal])
        #expect(try await harness.layer.members(of: "chat_room").isEmpty)
    }

    @Test func aWriteThatPassesTheSoftMarkPutsTheClientBehindAndHoldsItsGroupsPublishers() async throws {
        var limits = ConnectionLimits()
        limits.slowReaderGrace = .seconds(30)
        let harness = try await ConnectionHarness.make(limits: limits)
        try await harness.channel.pipeline.addHandler(WritabilityFlipper(channel: harness.channel), position: .first)
        let pressure = harness.connection.pressure
        try await harness.publish("fwd.message", 1)
        _ = try await harness.written(atLeast: 1)
        let held = try await harness.channel.testingEventLoop.submit { (harness.connection.behind, harness.connection.pressing) }.get()
        #expect(held.0 && held.1, "behind, and holding its groups' publishers")
        // A publisher into the client's group waits while it is behind; one into another group does not.
        let elsewhere = ContinuousClock.now
        await pressure.admit("chat_other")
        #expect(ContinuousClock.now - elsewhere < .milliseconds(100))
        let waiter = Task { () -> Duration in
            let start = ContinuousClock.now
            await pressure.admit("chat_room")
            return ContinuousClock.now - start
        }
        try await Task.sleep(for: .milliseconds(100))
        // Back under the low water mark: the client caught up, and the publisher goes on.
        try await harness.channel.testingEventLoop.submit {
            harness.channel.isWritable = true
            harness.channel.pipeline.fireChannelWritabilityChanged()
        }.get()
        let waited = await waiter.value
        #expect(waited >= .milliseconds(100) && waited < .seconds(5), "waited \(waited)")
        #expect(harness.connection.closingCode.load(ordering: .relaxed) == 0, "a client behind is not closed")
    }

    @Test func aClientBehindPastItsGraceHoldsNoOneAndIsClosedOnceTheBufferIsFull() async throws {
        var limits = ConnectionLimits()
        limits.maxQueuedBytes = 64 * 1024
        limits.slowReaderGrace = .milliseconds(200)
        let harness = try await ConnectionHarness.make(limits: limits)
        // Nothing flushed leaves: NIO's count of bytes waiting grows with every write, as with a client that stopped reading.
        try await harness.channel.pipeline.addHandler(FlushHolder(), position: .first)
        try await harness.channel.pipeline.addHandler(WritabilityFlipper(channel: harness.channel), position: .first)
        let text = String(repeating: "x", count: 5000)
        try await harness.layer.groupSend(["type": "fwd.message", "n": .string(text)], to: "chat_room")
        #expect(await eventually { (try? await harness.channel.testingEventLoop.submit { harness.connection.pressing }.get()) == true })
        // The grace passes (on the loop's clock): publishers go on.
        await harness.channel.testingEventLoop.advanceTime(by: .milliseconds(250))
        #expect(try await harness.channel.testingEventLoop.submit { harness.connection.pressing }.get() == false)
        let start = ContinuousClock.now
        await harness.connection.pressure.admit("chat_room")
        #expect(ContinuousClock.now - start < .milliseconds(100))
        // More than 64 KiB wait: closed as slow, 4008.
        for _ in 0..<20 { try await harness.layer.groupSend(["type": "fwd.message", "n": .string(text)], to: "chat_room") }
        #expect(await eventually {
            await harness.channel.testingEventLoop.run()
            return harness.connection.closingCode.load(ordering: .relaxed) == CloseCode.slowClient
        })
    }
}
