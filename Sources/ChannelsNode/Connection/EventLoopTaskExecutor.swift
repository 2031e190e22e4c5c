import NIOCore

/// Runs a connection's consumer task on the connection's own event loop.
///
/// A client frame's consumer code starts where the frame was read and writes where the socket lives; on
/// Swift's global executor the same work paid a thread wake-up to get there and another to come back, on
/// every frame (a fifth of the CPU in the 10-member-room benchmark). Consumer code runs between awaits only,
/// as it did before, so a consumer must still never block: here it would hold every connection of its loop.
///
/// One executor per event loop and node, shared by its connections (``LoopServices``).
final class EventLoopTaskExecutor: TaskExecutor {
    let eventLoop: any EventLoop

    init(_ eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        eventLoop.execute { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}
