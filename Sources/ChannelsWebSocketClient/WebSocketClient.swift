import NIOCore
import NIOPosix
import NIOWebSocket
import PerMessageDeflate
import Synchronization

/// A small WebSocket client on SwiftNIO, for tests and the load generator.
///
/// ```swift
/// let client = try await WebSocketClient.connect(host: "127.0.0.1", port: 8000, path: "/ws/chat/lobby/")
/// client.send(text: #"{"message": "hi"}"#)
/// for await message in client.messages { ... }
/// ```
/// Messages arrive on ``messages`` unless an `onMessage` handler is given, which then runs on the event
/// loop for each message (the load generator counts there without a task per message).
public final class WebSocketClient: Sendable {
    /// A complete message (fragments joined).
    public enum Message: Sendable, Hashable {
        case text(String)
        case binary([UInt8])

        public var text: String? { if case .text(let value) = self { value } else { nil } }
    }

    /// How the connection ended.
    public struct Close: Sendable, Hashable {
        /// The close code the server sent, or `nil` when the connection dropped without a close frame.
        public let code: UInt16?
        public let reason: String
    }

    /// Why connecting failed.
    public struct ConnectError: Error, Sendable, CustomStringConvertible {
        /// The HTTP status when the server answered the upgrade with something other than 101.
        public let status: Int?
        public let description: String
    }

    public let messages: AsyncStream<Message>
    private let channel: any Channel
    private let closeBox: CloseBox

    private let deflate: DeflateAgreement

    private init(channel: any Channel, messages: AsyncStream<Message>, closeBox: CloseBox, deflate: DeflateAgreement) {
        self.channel = channel
        self.messages = messages
        self.closeBox = closeBox
        self.deflate = deflate
    }

    /// Whether the server agreed on permessage-deflate (asked for with `compression: true`): messages go
    /// compressed both ways.
    public var isCompressed: Bool { deflate.agreed.load(ordering: .relaxed) }

    /// Messages that arrived compressed so far.
    public var compressedMessagesReceived: Int { deflate.inflated.load(ordering: .relaxed) }

    /// Connects and upgrades to WebSocket.
    /// - Throws: ``ConnectError`` with the HTTP status when the server refuses the upgrade.
    public static func connect(
        host: String,
        port: Int,
        path: String,
        headers: [(String, String)] = [],
        maxFrameSize: Int = 1 << 20,
        localAddress: String? = nil,
        compression: Bool = false,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        onMessage: (@Sendable (Message) -> Void)? = nil
    ) async throws -> WebSocketClient {
        let (stream, continuation) = AsyncStream.makeStream(of: Message.self)
        let closeBox = CloseBox()
        let deflate = DeflateAgreement()
        let headers = compression ? headers + [("Sec-WebSocket-Extensions", PerMessageDeflate.response)] : headers
        let deliver: @Sendable (Message) -> Void = onMessage ?? { continuation.yield($0) }
        let eventLoop = eventLoopGroup.next()
        let upgraded = eventLoop.makePromise(of: Void.self)
        var keyBytes = [UInt8](repeating: 0, count: 16)
        for index in keyBytes.indices { keyBytes[index] = .random(in: 0...255) }
        let key = base64(keyBytes)

        var bootstrap = ClientBootstrap(group: eventLoop)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .connectTimeout(.seconds(10))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        HandshakeHandler(
                            host: host, port: port, path: path, headers: headers, key: key, maxFrameSize: maxFrameSize,
                            upgraded: upgraded, deflate: deflate,
                            frameHandler: {
                                FrameHandler(deliver: deliver, finish: { continuation.finish() }, closeBox: closeBox, maxMessageSize: maxFrameSize, deflate: deflate)
                            }
                        )
                    )
                }
            }
        // A source address of our own: one address has only ~28,000 ephemeral ports towards one server.
        if let localAddress {
            do {
                bootstrap = bootstrap.bind(to: try SocketAddress(ipAddress: localAddress, port: 0))
            } catch {
                throw ConnectError(status: nil, description: "invalid source address \(localAddress): \(error)")
            }
        }
        let channel: any Channel
        do {
            channel = try await bootstrap.connect(host: host, port: port).get()
        } catch {
            upgraded.fail(error)
            throw ConnectError(status: nil, description: "could not connect to \(host):\(port): \(error)")
        }
        channel.closeFuture.whenComplete { _ in
            upgraded.fail(ConnectError(status: nil, description: "the connection closed during the upgrade"))
            continuation.finish()
        }
        // A server that took the TCP connection but never answers the upgrade must not hang the caller.
        let timeout = channel.eventLoop.scheduleTask(in: .seconds(10)) {
            upgraded.fail(ConnectError(status: nil, description: "no answer to the WebSocket upgrade from \(host):\(port) within 10 s"))
            channel.close(promise: nil)
        }
        upgraded.futureResult.whenComplete { _ in timeout.cancel() }
        try await upgraded.futureResult.get()
        return WebSocketClient(channel: channel, messages: stream, closeBox: closeBox, deflate: deflate)
    }

    /// Sends a text message.
    public func send(text: String) {
        send(.text, channel.allocator.buffer(string: text))
    }

    /// Sends a binary message.
    public func send(binary: [UInt8]) {
        send(.binary, channel.allocator.buffer(bytes: binary))
    }

    private func send(_ opcode: WebSocketOpcode, _ buffer: ByteBuffer) {
        if isCompressed, let compressed = PerMessageDeflate.deflate(buffer, allocator: channel.allocator) {
            channel.writeAndFlush(WebSocketFrame(fin: true, rsv1: true, opcode: opcode, maskKey: .random(), data: compressed), promise: nil)
        } else {
            channel.writeAndFlush(WebSocketFrame(fin: true, opcode: opcode, maskKey: .random(), data: buffer), promise: nil)
        }
    }

    /// Sends raw bytes as a text frame, unchecked (for tests of bad input such as invalid UTF-8).
    public func send(textBytes bytes: [UInt8]) {
        let buffer = channel.allocator.buffer(bytes: bytes)
        channel.writeAndFlush(WebSocketFrame(fin: true, opcode: .text, maskKey: .random(), data: buffer), promise: nil)
    }

    /// Starts the closing handshake with `code`, then waits for the connection to end.
    public func close(code: UInt16 = 1000) async {
        var data = channel.allocator.buffer(capacity: 2)
        data.writeInteger(code)
        channel.writeAndFlush(WebSocketFrame(fin: true, opcode: .connectionClose, maskKey: .random(), data: data), promise: nil)
        _ = await closed(timeout: .seconds(5))
        try? await channel.close()
    }

    /// Drops the TCP connection without a closing handshake.
    public func abort() {
        channel.close(promise: nil)
    }

    /// Stops reading from the socket (a client that does not read), or starts again.
    public func setReading(_ reading: Bool) {
        channel.setOption(.autoRead, value: reading).whenSuccess { if reading { self.channel.read() } }
    }

    /// Waits until the connection ends; `nil` if it is still open after `timeout`.
    public func closed(timeout: Duration = .seconds(10)) async -> Close? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if !channel.isActive { return closeBox.close ?? Close(code: nil, reason: "") }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return channel.isActive ? nil : (closeBox.close ?? Close(code: nil, reason: ""))
    }

    public var isOpen: Bool { channel.isActive }

    static func base64(_ bytes: [UInt8]) -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
        var output = ""
        var index = 0
        while index < bytes.count {
            let chunk = bytes[index..<min(index + 3, bytes.count)]
            let value = chunk.enumerated().reduce(0) { $0 | Int($1.element) << (16 - 8 * $1.offset) }
            for position in 0..<4 {
                output.append(position <= chunk.count ? alphabet[(value >> (18 - 6 * position)) & 63] : "=")
            }
            index += 3
        }
        return output
    }
}

/// The close frame the server sent.
final class CloseBox: Sendable {
    private let value = Mutex<WebSocketClient.Close?>(nil)
    var close: WebSocketClient.Close? { value.withLock { $0 } }
    func set(_ close: WebSocketClient.Close) { value.withLock { if $0 == nil { $0 = close } } }
}

@available(*, unavailable)
extension FrameHandler: Sendable {}


/// Performs the opening handshake by hand, then turns the pipeline into a WebSocket one.
///
/// Bytes that follow the 101 response in the same read (a server that closes at once sends its close frame
/// right behind it) go straight to the frame decoder, in order, in the same call: none can be lost.
final class HandshakeHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let host: String
    let port: Int
    let path: String
    let headers: [(String, String)]
    let key: String
    let maxFrameSize: Int
    let upgraded: EventLoopPromise<Void>
    let deflate: DeflateAgreement
    let frameHandler: () -> FrameHandler
    private var response: ByteBuffer?

    init(
        host: String, port: Int, path: String, headers: [(String, String)], key: String, maxFrameSize: Int,
        upgraded: EventLoopPromise<Void>, deflate: DeflateAgreement, frameHandler: @escaping () -> FrameHandler
    ) {
        self.deflate = deflate
        self.host = host
        self.port = port
        self.path = path
        self.headers = headers
        self.key = key
        self.maxFrameSize = maxFrameSize
        self.upgraded = upgraded
        self.frameHandler = frameHandler
    }

    func channelActive(context: ChannelHandlerContext) {
        var request = "GET \(path) HTTP/1.1\r\nHost: \(host):\(port)\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        request += "Sec-WebSocket-Key: \(key)\r\nSec-WebSocket-Version: 13\r\n"
        for (name, value) in headers { request += "\(name): \(value)\r\n" }
        request += "\r\n"
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(string: request)), promise: nil)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        if response == nil { response = incoming } else { response!.writeBuffer(&incoming) }
        guard let buffer = response, let end = buffer.readableBytesView.firstRange(of: Array("\r\n\r\n".utf8)) else {
            if (response?.readableBytes ?? 0) > 16 * 1024 { fail(context, status: nil, "the upgrade response is too large") }
            return
        }
        let headLength = end.upperBound - buffer.readableBytesView.startIndex
        var rest = buffer
        let head = rest.readString(length: headLength) ?? ""
        let statusLine = head.prefix { $0 != "\r" }
        let parts = statusLine.split(separator: " ")
        let status = parts.count > 1 ? Int(parts[1]) : nil
        guard status == 101 else {
            fail(context, status: status, "the server refused the WebSocket upgrade: \(statusLine.dropFirst(9))")
            return
        }
        let extensions = head.split(separator: "\r\n").filter { $0.lowercased().hasPrefix("sec-websocket-extensions:") }
        if extensions.contains(where: { $0.lowercased().contains("permessage-deflate") }) {
            deflate.agreed.store(true, ordering: .relaxed)
        }
        do {
            let pipeline = context.pipeline.syncOperations
            try pipeline.addHandler(WebSocketFrameEncoder(), position: .after(self))
            try pipeline.addHandler(ByteToMessageHandler(WebSocketFrameDecoder(maxFrameSize: maxFrameSize)), position: .last)
            try pipeline.addHandler(frameHandler(), position: .last)
        } catch {
            fail(context, status: nil, "could not set up the WebSocket pipeline: \(error)")
            return
        }
        response = nil
        upgraded.succeed()
        if rest.readableBytes > 0 { context.fireChannelRead(NIOAny(rest)) }
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    private func fail(_ context: ChannelHandlerContext, status: Int?, _ description: String) {
        upgraded.fail(WebSocketClient.ConnectError(status: status, description: description))
        context.close(promise: nil)
    }
}

@available(*, unavailable)
extension HandshakeHandler: Sendable {}

/// Whether the server agreed on permessage-deflate, set once by the handshake.
final class DeflateAgreement: Sendable {
    let agreed = Atomic<Bool>(false)
    let inflated = Atomic<Int>(0)
}

/// Joins fragments, inflates compressed messages, answers pings, records the close frame.
final class FrameHandler: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    let deliver: @Sendable (WebSocketClient.Message) -> Void
    let finish: @Sendable () -> Void
    let closeBox: CloseBox
    let maxMessageSize: Int
    let deflate: DeflateAgreement
    private var fragments: ByteBuffer?
    private var fragmentOpcode: WebSocketOpcode = .text
    private var fragmentsCompressed = false

    init(
        deliver: @escaping @Sendable (WebSocketClient.Message) -> Void, finish: @escaping @Sendable () -> Void, closeBox: CloseBox,
        maxMessageSize: Int, deflate: DeflateAgreement
    ) {
        self.deflate = deflate
        self.deliver = deliver
        self.finish = finish
        self.closeBox = closeBox
        self.maxMessageSize = maxMessageSize
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .text, .binary:
            if frame.fin {
                emit(frame.opcode, frame.unmaskedData, compressed: frame.rsv1, context: context)
            } else {
                fragmentOpcode = frame.opcode
                fragmentsCompressed = frame.rsv1
                fragments = frame.unmaskedData
            }
        case .continuation:
            var data = frame.unmaskedData
            fragments?.writeBuffer(&data)
            if frame.fin, let whole = fragments {
                fragments = nil
                emit(fragmentOpcode, whole, compressed: fragmentsCompressed, context: context)
            }
        case .ping:
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, maskKey: .random(), data: frame.unmaskedData)), promise: nil)
        case .connectionClose:
            var data = frame.unmaskedData
            let code = data.readInteger(as: UInt16.self)
            let reason = data.readString(length: data.readableBytes) ?? ""
            closeBox.set(WebSocketClient.Close(code: code, reason: reason))
            var reply = context.channel.allocator.buffer(capacity: 2)
            if let code { reply.writeInteger(code) }
            let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, maskKey: .random(), data: reply)))
                .whenComplete { _ in loopBound.value.close(promise: nil) }
        default:
            break
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        finish()
        context.fireChannelInactive()
    }

    private func emit(_ opcode: WebSocketOpcode, _ data: ByteBuffer, compressed: Bool, context: ChannelHandlerContext) {
        var data = data
        if compressed {
            guard let inflated = try? PerMessageDeflate.inflate(data, limit: maxMessageSize, allocator: context.channel.allocator) else {
                context.close(promise: nil)
                return
            }
            data = inflated
            deflate.inflated.add(1, ordering: .relaxed)
        }
        if opcode == .text {
            deliver(.text(String(buffer: data)))
        } else {
            deliver(.binary(Array(buffer: data)))
        }
    }
}
