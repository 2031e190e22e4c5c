import NIOCore
import Testing

@testable import ChannelsNode

/// The connection's value types alone: the close handshake and ping timeout, the consumer's mailbox, the
/// gathered writes.
struct ConnectionStateTests {
    @Test func theNodeClosesOnceAndKeepsItsCode() {
        var lifecycle = ConnectionLifecycle()
        #expect(lifecycle.endCode == CloseCode.abnormal)
        let first = lifecycle.close(code: 4008)
        let second = lifecycle.close(code: 1000)
        #expect(first && !second, "a second close sends no second close frame")
        #expect(lifecycle.state == .closing && lifecycle.endCode == 4008)
        #expect(lifecycle.peerClosed(code: 1000) == .closeSocket, "the client's answer to our close ends it")
        let closedBefore = lifecycle.socketClosed()
        #expect(!closedBefore && lifecycle.state == .closed)
    }

    @Test func theClientsCloseIsAnsweredWithItsCode() {
        var lifecycle = ConnectionLifecycle()
        #expect(lifecycle.peerClosed(code: 4321) == .answer(4321))
        #expect(lifecycle.endCode == 4321)
        var empty = ConnectionLifecycle()
        #expect(empty.peerClosed(code: nil) == .answer(CloseCode.normal), "a close frame without a code is a normal close")
    }

    @Test func aClientSilentForAWholePingIntervalTimesOut() {
        var lifecycle = ConnectionLifecycle()
        #expect(lifecycle.pingDue() == .ping)
        lifecycle.heard()
        #expect(lifecycle.pingDue() == .ping, "a pong (or any frame) since the last ping")
        #expect(lifecycle.pingDue() == .timedOut)
        _ = lifecycle.close(code: CloseCode.pingTimeout)
        #expect(lifecycle.pingDue() == .none)
    }

    @Test func aConnectionThatNeverUpgradedIsForgottenOnce() {
        var lifecycle = ConnectionLifecycle()
        let first = lifecycle.abandon()
        let again = lifecycle.abandon()
        let closedBefore = lifecycle.socketClosed()
        #expect(first && !again)
        #expect(closedBefore, "closed before: the consumer is not told twice")
    }

    @Test func theMailboxRunsOneTaskAtATimeInOrder() {
        var mailbox = ConsumerMailbox<Int>(maxQueued: 3, maxClientFrames: 2)
        #expect(mailbox.isIdle)
        _ = mailbox.append(1, isLayerMessage: true)
        #expect(!mailbox.isIdle)
        let first = mailbox.startTask()
        let overlapping = mailbox.startTask()
        #expect(first == [1] && overlapping == nil, "one task at a time")
        #expect(!mailbox.isIdle, "while the task runs, forwarded messages must wait behind it")
        _ = mailbox.append(2, isLayerMessage: true)
        _ = mailbox.append(3, isLayerMessage: false)
        mailbox.prepend(0)
        let resume = mailbox.taskEnded(open: true)
        let next = mailbox.startTask()
        #expect(!resume && next == [0, 2, 3])
    }

    @Test func layerMessagesPastTheBoundAreRefusedAndClientFramesPauseReading() {
        var mailbox = ConsumerMailbox<Int>(maxQueued: 2, maxClientFrames: 2)
        let taken = [mailbox.append(1, isLayerMessage: true), mailbox.append(2, isLayerMessage: true), mailbox.append(3, isLayerMessage: true)]
        #expect(taken == [true, true, false], "the third layer message closes the client as slow")
        let own = mailbox.append(4, isLayerMessage: false)
        #expect(own, "the node's own events are not bounded")
        let pauses = [mailbox.clientFrameQueued(), mailbox.clientFrameQueued(), mailbox.clientFrameQueued()]
        #expect(pauses == [false, true, false], "the second pending client frame pauses reading, once")
        _ = mailbox.startTask()
        let readAgain = mailbox.taskEnded(open: false)
        #expect(!readAgain, "a closed connection is not read again")
        var open = ConsumerMailbox<Int>(maxQueued: 2, maxClientFrames: 1)
        _ = open.append(1, isLayerMessage: false)
        let paused = open.clientFrameQueued()
        _ = open.startTask()
        let resumed = open.taskEnded(open: true)
        #expect(paused && resumed, "reading resumes when the task took the frames")
    }

    @Test func forwardedFramesAreBoundedByBytesApartFromTheMessageCount() {
        var mailbox = ConsumerMailbox<Int>(maxQueued: 2, maxClientFrames: 2, maxForwardedBytes: 250)
        let forwarded = (0..<3).map { mailbox.append(forwarded: $0, bytes: 80) }
        #expect(forwarded == [true, true, true])
        let fourth = mailbox.append(forwarded: 3, bytes: 80)
        #expect(!fourth, "past 250 bytes")
        let layer = [mailbox.append(10, isLayerMessage: true), mailbox.append(11, isLayerMessage: true), mailbox.append(12, isLayerMessage: true)]
        #expect(layer == [true, true, false], "forwarded frames do not count against the messages' bound")
        let taken = mailbox.startTask()
        #expect(taken == [0, 1, 2, 10, 11])
        #expect(mailbox.forwardedBytes == 0)
        let afterTask = mailbox.append(forwarded: 4, bytes: 250)
        #expect(afterTask, "a new batch starts empty")
        mailbox.dropLayerMessages { _ in true }
        #expect(mailbox.forwarded == 0 && mailbox.events.isEmpty)
    }

    static func frame(_ size: Int) -> ByteBuffer { ByteBuffer(repeating: 0x61, count: size) }

    @Test func smallFramesAreGatheredAndLargeOnesWrittenAsTheyAre() {
        var batch = FrameBatch()
        var ready = batch.add(Self.frame(100))
        let pending = batch.pendingBytes
        #expect(ready.first == nil && ready.second == nil && pending == 100)
        ready = batch.add(Self.frame(200))
        #expect(ready.first == nil && batch.pendingBytes == 300)
        // A large frame: what was gathered goes first, then the large one alone.
        ready = batch.add(Self.frame(FrameBatch.gatherLimit + 1))
        #expect(ready.first?.readableBytes == 300 && ready.second?.readableBytes == FrameBatch.gatherLimit + 1)
        #expect(batch.pendingBytes == 0)
        ready = batch.add(Self.frame(10))
        let (rest, frames) = batch.flush()
        let after = (batch.frames, batch.gathered)
        #expect(rest?.readableBytes == 10 && frames == 4)
        #expect(after.0 == 0 && after.1 == nil)
    }

    @Test func aGatheredBufferPastTheLimitIsWrittenAtOnce() {
        var batch = FrameBatch()
        _ = batch.add(Self.frame(FrameBatch.gatherLimit))
        let ready = batch.add(Self.frame(2))
        #expect(ready.first?.readableBytes == FrameBatch.gatherLimit + 2 && ready.second == nil)
        let rest = batch.flush()
        #expect(rest.buffer == nil && rest.frames == 2)
    }
}
