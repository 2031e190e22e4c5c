import DequeModule

/// The events a connection's consumer code handles, one at a time in arrival order, and when a task runs
/// them: started when work arrives, ended when the mailbox is empty, so an idle connection has no task.
/// No I/O: the connection starts the task and stops or resumes reading the socket when told.
///
/// Bounds: layer messages past ``maxQueued`` are refused (the connection closes the client as slow), and
/// after ``maxClientFrames`` client frames waiting for the consumer the socket is not read until the task
/// has taken them. Frames a forward rule made for layer messages, waiting only to keep their place behind the
/// consumer's work, are bounded by bytes (``maxForwardedBytes``) instead: a consumer awaiting Redis for a
/// moment under load must not get its reading client closed for the room's messages that came meanwhile.
struct ConsumerMailbox<Event> {
    private(set) var events = Deque<Event>()
    /// Whether a task runs the consumer now.
    private(set) var running = false
    private(set) var readingPaused = false
    private var clientFrames = 0
    /// Forwarded frames waiting, and their bytes.
    private(set) var forwarded = 0
    private(set) var forwardedBytes = 0
    let maxQueued: Int
    let maxClientFrames: Int
    let maxForwardedBytes: Int

    init(maxQueued: Int, maxClientFrames: Int, maxForwardedBytes: Int = .max) {
        self.maxQueued = maxQueued
        self.maxClientFrames = maxClientFrames
        self.maxForwardedBytes = maxForwardedBytes
    }

    /// No task runs and nothing waits: a forwarded message may be written at once without overtaking anything.
    var isIdle: Bool { !running && events.isEmpty }

    /// Appends an event; `false` when it is a layer message and the mailbox is full.
    mutating func append(_ event: Event, isLayerMessage: Bool) -> Bool {
        if isLayerMessage, events.count - forwarded >= maxQueued { return false }
        events.append(event)
        return true
    }

    /// Appends a frame made for a layer message, `bytes` long; `false` when the forwarded frames waiting would
    /// pass ``maxForwardedBytes``.
    mutating func append(forwarded event: Event, bytes: Int) -> Bool {
        guard forwardedBytes + bytes <= maxForwardedBytes else { return false }
        forwarded += 1
        forwardedBytes += bytes
        events.append(event)
        return true
    }

    /// Puts an event ahead of everything waiting (the presence list, before live messages).
    mutating func prepend(_ event: Event) {
        events.prepend(event)
    }

    /// A client frame was queued: whether to stop reading the socket now.
    mutating func clientFrameQueued() -> Bool {
        clientFrames += 1
        guard clientFrames >= maxClientFrames, !readingPaused else { return false }
        readingPaused = true
        return true
    }

    /// Starts a task when none runs and something waits: what it runs, in order.
    mutating func startTask() -> [Event]? {
        guard !running, !events.isEmpty else { return nil }
        running = true
        defer {
            events.removeAll()
            clientFrames = 0
            forwarded = 0
            forwardedBytes = 0
        }
        return Array(events)
    }

    /// The task ended: whether to read the socket again (it was paused and the connection is open).
    mutating func taskEnded(open: Bool) -> Bool {
        running = false
        guard readingPaused, open else { return false }
        readingPaused = false
        return true
    }

    /// Drops the layer messages waiting, forwarded frames included (the client is gone).
    mutating func dropLayerMessages(where isLayerMessage: (Event) -> Bool) {
        events.removeAll(where: isLayerMessage)
        forwarded = 0
        forwardedBytes = 0
    }

    /// Takes what waits, leaving the mailbox empty (to put something ahead of it).
    mutating func takeWaiting() -> Deque<Event> {
        defer {
            events.removeAll()
            forwarded = 0
            forwardedBytes = 0
        }
        return events
    }

    mutating func socketClosed() {
        readingPaused = false
    }
}
