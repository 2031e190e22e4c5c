import NIOCore

/// The frames written to one client between two flushes. Small frames are copied into one buffer (one
/// pipeline write and one iovec per batch); the first is kept as it is, so a lone frame, shared by every
/// member of a group, costs no copy; a large one is written as it is.
struct FrameBatch {
    /// Frames up to this size are gathered; a gathered buffer past it is written at once.
    static let gatherLimit = 16 * 1024

    private(set) var gathered: ByteBuffer?
    /// Frames added since the last flush.
    private(set) var frames = 0

    var pendingBytes: Int { gathered?.readableBytes ?? 0 }

    /// Adds a frame; returns the buffers to write now, in order (the caller writes them after this returns:
    /// a write can close the connection, which flushes the batch).
    mutating func add(_ frame: ByteBuffer) -> (first: ByteBuffer?, second: ByteBuffer?) {
        frames += 1
        var ready: (first: ByteBuffer?, second: ByteBuffer?) = (nil, nil)
        if gathered == nil || frame.readableBytes > Self.gatherLimit {
            ready.first = gathered
            gathered = frame
        } else {
            gathered!.writeImmutableBuffer(frame)
        }
        if gathered!.readableBytes > Self.gatherLimit {
            if ready.first == nil { ready.first = gathered } else { ready.second = gathered }
            gathered = nil
        }
        return ready
    }

    /// What is gathered and not written yet.
    mutating func takeGathered() -> ByteBuffer? {
        defer { gathered = nil }
        return gathered
    }

    /// Ends the batch: the gathered buffer still to write, and how many frames the batch had.
    mutating func flush() -> (buffer: ByteBuffer?, frames: Int) {
        defer {
            gathered = nil
            frames = 0
        }
        return (gathered, frames)
    }
}
