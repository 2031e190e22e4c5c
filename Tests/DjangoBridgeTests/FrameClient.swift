import ChannelsTestSupport
import ChannelsWebSocketClient
import Foundation
import Synchronization

/// A WebSocket client on any path of a node, keeping every text frame, for the bridge's tests.
final class FrameClient: Sendable {
    let client: WebSocketClient
    private let box: Box

    private final class Box: Sendable {
        let frames = Mutex<[String]>([])
    }

    private init(client: WebSocketClient, box: Box) {
        self.client = client
        self.box = box
    }

    /// Django's AllowedHostsOriginValidator wants a browser's Origin from ALLOWED_HOSTS.
    static let origin = ("Origin", "http://127.0.0.1:8001")

    static func connect(port: Int, path: String, headers: [(String, String)] = [origin]) async throws -> FrameClient {
        let box = Box()
        let client = try await WebSocketClient.connect(
            host: "127.0.0.1", port: port, path: path, headers: headers,
            onMessage: { message in if case .text(let text) = message { box.frames.withLock { $0.append(text) } } }
        )
        return FrameClient(client: client, box: box)
    }

    var frames: [String] { box.frames.withLock { $0 } }

    /// Every frame parsed as a JSON object.
    var objects: [[String: Any]] {
        frames.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    func waitForFrames(_ count: Int, timeout: Duration = .seconds(10)) async -> Bool {
        await eventually(timeout: timeout, every: .milliseconds(10)) { self.frames.count >= count }
    }

    func send(json object: [String: Any]) throws {
        client.send(text: String(decoding: try JSONSerialization.data(withJSONObject: object), as: UTF8.self))
    }

    /// The HTTP status a refused upgrade got, or `nil` when it upgraded.
    static func refusal(port: Int, path: String, headers: [(String, String)] = [origin]) async -> Int? {
        do {
            let client = try await WebSocketClient.connect(host: "127.0.0.1", port: port, path: path, headers: headers, onMessage: { _ in })
            await client.close()
            return nil
        } catch let error as WebSocketClient.ConnectError {
            return error.status ?? -1
        } catch {
            return -2
        }
    }
}
