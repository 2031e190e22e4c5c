import ChannelsWebSocketClient
import Foundation
import Synchronization

/// A WebSocket client in a chat room, collecting every text frame it receives.
public final class ChatClient: Sendable {
    public let client: WebSocketClient
    private let received: Inbox

    final class Inbox: Sendable {
        let frames = Mutex<[String]>([])
    }

    private init(client: WebSocketClient, received: Inbox) {
        self.client = client
        self.received = received
    }

    /// Connects to `/ws/chat/<room>/` on a node, with `query` (`token=...`) after the path if given.
    public static func connect(port: Int, room: String, query: String? = nil, headers: [(String, String)] = []) async throws -> ChatClient {
        let inbox = Inbox()
        let client = try await WebSocketClient.connect(
            host: "127.0.0.1", port: port, path: "/ws/chat/\(room)/" + (query.map { "?\($0)" } ?? ""), headers: headers,
            onMessage: { message in
                if case .text(let text) = message { inbox.frames.withLock { $0.append(text) } }
            }
        )
        return ChatClient(client: client, received: inbox)
    }

    /// Sends `{"message": text}`.
    public func say(_ text: String) {
        client.send(text: #"{"message": "\#(text)"}"#)
    }

    /// Every text frame so far.
    public var frames: [String] { received.frames.withLock { $0 } }

    /// The `message` of every chat frame so far.
    public var messages: [String] {
        frames.compactMap { frame in
            (try? JSONSerialization.jsonObject(with: Data(frame.utf8)) as? [String: Any])?["message"] as? String
        }
    }

    /// Waits until at least `count` frames arrived; returns whether they did within `timeout`.
    public func waitForFrames(_ count: Int, timeout: Duration = .seconds(10)) async -> Bool {
        await eventually(timeout: timeout, every: .milliseconds(10)) { self.frames.count >= count }
    }
}
