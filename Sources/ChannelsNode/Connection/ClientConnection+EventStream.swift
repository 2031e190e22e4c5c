import ChannelLayers
import ChannelsProtocol
import CoreMetrics
import Logging
import NIOCore

extension ClientConnection {
    // MARK: - Event streams: the node's own frames in a stream's form

    /// The recovery answer as this connection gets it. On an event stream: `event: recovered` or
    /// `event: unrecoverable` with the frame's JSON as its data and the position as its id, so that a
    /// browser's `EventSource` sends it back as `Last-Event-ID` even when no message came since.
    func recoveryFrame(recovered: Bool, epoch: String, offset: Int64) -> ByteBuffer {
        let frame = ServerFrame.recovery(recovered: recovered, epoch: epoch, offset: offset)
        guard eventStream, let payload = ServerFrame.payload(of: frame) else { return frame }
        return ServerEvent.event(
            name: recovered ? "recovered" : "unrecoverable", id: epoch.isEmpty ? nil : ServerEvent.id(epoch: epoch, offset: offset),
            data: payload.readableBytesView
        )
    }

    /// A text frame the node makes for this connection, named `event` on an event stream.
    func nodeFrame(_ text: String, event name: String) -> ByteBuffer {
        guard eventStream else { return ServerFrame.text(text) }
        return ServerEvent.event(name: name, data: Array(text.utf8))
    }

    /// A frame an event stream cannot carry (binary, from the consumer): dropped, counted, said once in a while.
    func droppedFromEventStream(_ frame: ByteBuffer) {
        metrics.eventStreamDroppedFrames.increment()
        warnings.warn("dropped a binary frame for an event-stream client: server-sent events carry text only", metadata: ["path": "\(scope.path)"])
    }
}

extension ClientConnection.AskedPosition {
    /// Where a recovering client asks to continue from: an event stream's `Last-Event-ID` (what a browser's
    /// `EventSource` sends by itself when it reconnects), else the query's `epoch` and `offset`.
    init(scope: Scope) {
        if scope.transport == .eventStream, let id = scope.header("last-event-id") {
            if let (epoch, offset) = ServerEvent.position(fromID: id) {
                self = .at(HistoryPosition(offset: offset, epoch: epoch))
            } else {
                self = .invalid
            }
            return
        }
        self.init(query: scope.query)
    }
}
