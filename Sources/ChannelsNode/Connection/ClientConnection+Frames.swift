import ChannelsProtocol
import CoreMetrics
import Logging
import NIOCore
import NIOWebSocket
import PerMessageDeflate
import Synchronization

/// The client's side of a WebSocket connection: its bytes read as frames (``ClientFrameReader``), each frame
/// checked and handed to the consumer, or answered (ping, close).
extension ClientConnection {
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !unreadable else { return }
        var bytes = unwrapInboundIn(data)
        do throws(ClientFrameReader.Failure) {
            while let frame = try reader.next(from: &bytes, maxMessageSize: limits.maxMessageSize) {
                handle(frame, context: context)
            }
        } catch {
            unreadable = true
            switch error {
            case .tooLarge:
                close(code: CloseCode.messageTooBig, reason: "message larger than \(limits.maxMessageSize) bytes")
            case .protocolError(let detail):
                logger.debug("closing a client that broke the WebSocket protocol", metadata: ["reason": "\(detail)"])
                close(code: CloseCode.protocolError, reason: "WebSocket protocol error")
            }
        }
    }

    func handle(_ frame: WebSocketFrame, context: ChannelHandlerContext) {
        lifecycle.heard()
        // RFC 6455 5.1: a server must close the connection when a client frame is not masked.
        guard frame.maskKey != nil else {
            close(code: CloseCode.protocolError, reason: "client frames must be masked")
            return
        }
        switch frame.opcode {
        case .text, .binary:
            guard lifecycle.isOpen else { return }
            metrics.messagesIn.increment()
            metrics.traffic.countIn()
            guard rateLimiter.allow() else {
                metrics.rateLimitCloses.increment()
                close(code: CloseCode.rateLimited, reason: "more than \(limits.maxMessagesPerSecond) messages per second")
                return
            }
            // RFC 6455 5.2: reserved bits only with an extension that defines them (RSV1: permessage-deflate).
            guard !frame.rsv2, !frame.rsv3, !frame.rsv1 || deflate else {
                close(code: CloseCode.protocolError, reason: "reserved bits set without an extension that defines them")
                return
            }
            var data = frame.unmaskedData
            if frame.rsv1 {
                do {
                    data = try PerMessageDeflate.inflate(data, limit: limits.maxMessageSize, allocator: context.channel.allocator)
                } catch is PerMessageDeflate.TooLarge {
                    metrics.inflatedTooLarge.increment()
                    close(code: CloseCode.messageTooBig, reason: "a compressed message inflates past \(limits.maxMessageSize) bytes")
                    return
                } catch {
                    close(code: CloseCode.invalidPayload, reason: "a compressed message that is not DEFLATE")
                    return
                }
            }
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
            if mailbox.clientFrameQueued(), !readingHeld {
                try? context.channel.syncOptions?.setOption(.autoRead, value: false)
            }
        case .ping:
            guard lifecycle.isOpen, !frame.rsv1 else { return }
            write(ServerFrame.make(.pong, payload: frame.unmaskedData.readableBytesView))
            flush()
        case .pong:
            break
        case .connectionClose:
            var data = frame.unmaskedData
            switch lifecycle.peerClosed(code: data.readInteger(as: UInt16.self)) {
            case .answer(let code):
                // Answer with the client's code, then close once the answer is out.
                closingCode.store(code, ordering: .relaxed)
                flush()
                let channel = context.channel
                context.writeAndFlush(wrapOutboundOut(ServerFrame.close(code: code, reason: ""))).whenComplete { _ in
                    channel.close(promise: nil)
                }
            case .closeSocket:
                context.close(promise: nil)
            }
        default:
            close(code: CloseCode.protocolError, reason: "unknown opcode")
        }
    }
}
