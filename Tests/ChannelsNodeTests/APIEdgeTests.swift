import ChannelsTestSupport
import ChannelsWebSocketClient
import Foundation
import Testing

/// The HTTP API's edges (issue 21) against real nodes: reserved channels refused by the channel routes.
@Suite(.serialized) struct APIEdgeTests {
    static let key = "edge-test-api-key-0123456789abcdef"

    static func keyFile() throws -> String { try apiKeyFile([key]) }

    // MARK: - Item 5: reserved channels

    /// The channel routes refuse the layer's group and presence channels (the control group among them):
    /// they would disconnect users, forge presence, or publish into a group behind the group route's back.
    @Test func reservedChannelsAreRefused() async throws {
        let redis = try await RedisServer.start()
        let node = try await NodeProcess.start(redis: [redis.url], arguments: ["--api-key-file", try Self.keyFile()])
        defer { node.terminate() }
        let client = try await ChatClient.connect(port: node.port, room: "reserved")
        let members = try await httpRequest(port: node.port, "GET", "/api/groups/chat_reserved/members", key: Self.key)
        let channel = try #require((members.json?["members"] as? [[String: Any]])?.first?["channel"] as? String, "\(members.body)")

        let disconnect = #"{"type": "channels.control", "action": "disconnect", "channel": "\#(channel)", "code": 4000, "reason": "forged"}"#
        let forgedJoin = #"{"type": "presence", "event": "join", "channel": "asgispecific.forged", "user": "mallory", "info": null, "node": "x", "at": 1}"#
        let cases: [(String, String)] = [
            ("/api/channels/asgi__group__channels.control/send", disconnect),
            ("/api/channels/asgi__presence__chat_reserved/send", forgedJoin),
            ("/api/channels/asgi__group__chat_reserved/send", #"{"type": "chat.message", "message": "around the group route", "__offset": 9000000000000000000}"#),
            ("/api/channels/asgi__group__channels.probe.\(node.nodeID)/send", #"{"type": "channels.probe"}"#),
            ("/api/channels/asgi__group__chat_reserved/disconnect", "{}"),
            ("/api/channels/asgi__presence__chat_reserved/disconnect", "{}"),
        ]
        for (path, body) in cases {
            let answer = try await httpRequest(port: node.port, "POST", path, key: Self.key, json: body)
            #expect(answer.status == 400, "\(path): \(answer.status) \(answer.body)")
            #expect(answer.json?["code"] as? String == "reserved_channel", "\(path): \(answer.body)")
            #expect((answer.json?["message"] as? String)?.contains("/api/groups/") == true, "\(path): \(answer.body)")
        }
        // Nothing reached the client: the next message through the group route is its first frame, and it is still connected.
        let sent = try await httpRequest(port: node.port, "POST", "/api/groups/chat_reserved/send", key: Self.key, json: #"{"type": "chat.message", "message": "legit"}"#)
        #expect(sent.status == 202)
        #expect(await client.waitForFrames(1))
        try await Task.sleep(for: .milliseconds(300))
        #expect(client.messages == ["legit"], "\(client.frames)")
        #expect(client.client.isOpen)
        let presence = try await httpRequest(port: node.port, "GET", "/api/groups/chat_reserved/presence", key: Self.key)
        #expect(!presence.body.contains("mallory"), "\(presence.body)")
        // A connection's own channel is still a valid target.
        let direct = try await httpRequest(port: node.port, "POST", "/api/channels/\(channel)/send", key: Self.key, json: #"{"type": "chat.message", "message": "direct"}"#)
        #expect(direct.status == 202, "\(direct.body)")
        #expect(await client.waitForFrames(2))
    }

    /// The reserved names follow the layer's prefix (`--prefix`), not a fixed `asgi`.
    @Test func reservedChannelsFollowTheLayersPrefix() async throws {
        let redis = try await RedisServer.start()
        let node = try await NodeProcess.start(redis: [redis.url], arguments: ["--api-key-file", try Self.keyFile(), "--prefix", "myapp"])
        defer { node.terminate() }
        let client = try await ChatClient.connect(port: node.port, room: "prefixed")
        let members = try await httpRequest(port: node.port, "GET", "/api/groups/chat_prefixed/members", key: Self.key)
        let channel = try #require((members.json?["members"] as? [[String: Any]])?.first?["channel"] as? String, "\(members.body)")
        #expect(channel.hasPrefix("myappspecific."))
        let disconnect = #"{"type": "channels.control", "action": "disconnect", "channel": "\#(channel)"}"#
        let answer = try await httpRequest(port: node.port, "POST", "/api/channels/myapp__group__channels.control/send", key: Self.key, json: disconnect)
        #expect(answer.status == 400 && answer.json?["code"] as? String == "reserved_channel", "\(answer.body)")
        try await Task.sleep(for: .milliseconds(300))
        #expect(client.client.isOpen)
    }
}
