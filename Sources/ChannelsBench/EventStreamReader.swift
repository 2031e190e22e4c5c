import NIOCore
import NIOPosix
import Synchronization

/// A light server-sent events reader for the benchmarks: one socket, `GET path` with
/// `Accept: text/event-stream`, and each event's data handed over as it arrives. It skips what a benchmark
/// does not need (event names, ids, comments): it is a load generator, kept lighter than the node.
final class EventStreamReader: Sendable {
    private let channel: any Channel
    private let open = Atomic<Bool>(true)

    private init(channel: any Channel) {
        self.channel = channel
    }

    var isOpen: Bool { open.load(ordering: .relaxed) }

    /// Connects and sends the request; resolves once the node answered 200 (else throws).
    static func connect(
        host: String, port: Int, path: String, headers: [(String, String)] = [], localAddress: String? = nil,
        onData: @escaping @Sendable (String) -> Void
    ) async throws -> EventStreamReader {
        let answered = MultiThreadedEventLoopGroup.singleton.any().makePromise(of: Void.self)
        var bootstrap = ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        if let localAddress { bootstrap = bootstrap.bind(to: try SocketAddress(ipAddress: localAddress, port: 0)) }
        let channel = try await bootstrap.channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(Parser(answered: answered, onData: onData))
            }
        }.connect(host: host, port: port).get()
        let reader = EventStreamReader(channel: channel)
        channel.closeFuture.whenComplete { _ in
            reader.open.store(false, ordering: .relaxed)
            answered.fail(BenchFailure(description: "the node closed the event stream"))
        }
        var request = "GET \(path) HTTP/1.1\r\nHost: \(host):\(port)\r\nAccept: text/event-stream\r\n"
        for (name, value) in headers { request += "\(name): \(value)\r\n" }
        request += "\r\n"
        try await channel.writeAndFlush(ByteBuffer(string: request)).get()
        try await answered.futureResult.get()
        return reader
    }

    func abort() {
        channel.close(promise: nil)
    }

    /// The answer's head, then `data:` lines (the node writes one per event: its frames are JSON on one line).
    final class Parser: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        // Unchecked: used on its channel's event loop only.
        private var pending = ByteBuffer()
        private var inBody = false
        private let answered: EventLoopPromise<Void>
        private let onData: @Sendable (String) -> Void

        init(answered: EventLoopPromise<Void>, onData: @escaping @Sendable (String) -> Void) {
            self.answered = answered
            self.onData = onData
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var bytes = unwrapInboundIn(data)
            // Whole lines are read where they arrived; only a line cut by the read is copied.
            if pending.readableBytes > 0 {
                pending.writeBuffer(&bytes)
                bytes = pending
                pending.clear()
            }
            if !inBody {
                guard let end = bytes.readableBytesView.firstRange(of: [13, 10, 13, 10]) else {
                    pending = bytes
                    return
                }
                let head = bytes.readString(length: end.upperBound - bytes.readerIndex) ?? ""
                guard head.hasPrefix("HTTP/1.1 200") || head.hasPrefix("HTTP/1.0 200") else {
                    answered.fail(BenchFailure(description: "the node answered \(head.prefix(while: { $0 != "\r" }))"))
                    context.close(promise: nil)
                    return
                }
                inBody = true
                answered.succeed(())
            }
            let view = bytes.readableBytesView
            var start = view.startIndex
            while let newline = view[start...].firstIndex(of: 10) {
                // "data: " is 6 bytes; other lines (ids, names, comments, blank) are skipped without a copy.
                if newline - start > 6, view[start] == UInt8(ascii: "d"), view[start + 4] == UInt8(ascii: ":") {
                    onData(String(decoding: view[(start + 6)..<newline], as: UTF8.self))
                }
                start = newline + 1
            }
            if start < view.endIndex { pending.writeBytes(view[start...]) }
        }
    }
}
