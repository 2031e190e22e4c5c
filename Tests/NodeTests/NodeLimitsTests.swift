import ChannelsTestSupport
import ChannelsWebSocketClient
import Foundation
import Testing

/// Bad input and slow clients against a real node: clear answers, documented close codes, no crash.
@Suite struct NodeLimitsTests {
    @Test func theInMemoryNodeServesTheChatAndThePage() async throws {
        let node = try await NodeProcess.start()
        let alice = try await ChatClient.connect(port: node.port, room: "lobby")
        let bob = try await ChatClient.connect(port: node.port, room: "lobby")
        alice.say("hello bob")
        #expect(await bob.waitForFrames(1))
        #expect(await alice.waitForFrames(1))
        // Chat rooms keep a history by default: frames carry the message's offset and epoch for recovery.
        for client in [bob, alice] {
            #expect(client.frames.count == 1 && client.frames[0].hasPrefix(#"{"message":"hello bob","offset":1,"epoch":""#), "\(client.frames)")
        }

        let page = try await node.get("/")
        #expect(page.status == 200 && page.body.contains("new ChannelsClient") && page.body.contains(#"src="/channels.js""#))
        let script = try await node.get("/channels.js")
        #expect(script.status == 200 && script.body.contains("class ChannelsClient") && script.body.contains("new WebSocket"))
        #expect(try await node.get("/healthz").status == 200)
        #expect(try await node.get("/readyz").status == 200)
        #expect(try await node.get("/nothing-here").status == 404)
        #expect(try await node.get("/ws/chat/lobby/").status == 426)
    }

    @Test func invalidJSONGetsAnErrorFrameAndTheConnectionStays() async throws {
        let node = try await NodeProcess.start()
        let client = try await ChatClient.connect(port: node.port, room: "lobby")
        client.client.send(text: "not json")
        client.client.send(text: #"{"text": "no message field"}"#)
        client.say("still works")
        #expect(await client.waitForFrames(3))
        #expect(client.frames[0].hasPrefix(#"{"type":"error","error":"invalid_json","detail":"invalid JSON at byte 0"#))
        #expect(client.frames[1].hasPrefix(#"{"type":"error","error":"invalid_frame""#))
        #expect(client.frames[2].hasPrefix(#"{"message":"still works","offset":1,"#))
        #expect(client.client.isOpen)
    }

    @Test func invalidJSONClosesWith1007UnderTheClosePolicy() async throws {
        let node = try await NodeProcess.start(arguments: ["--invalid-frame", "close"])
        let client = try await ChatClient.connect(port: node.port, room: "lobby")
        client.client.send(text: "{broken")
        #expect(await client.client.closed()?.code == 1007)
    }

    @Test func anOversizedMessageClosesWith1009() async throws {
        let node = try await NodeProcess.start(arguments: ["--max-message-size", "1024"])
        let client = try await ChatClient.connect(port: node.port, room: "lobby")
        client.client.send(text: #"{"message": ""# + String(repeating: "x", count: 2000) + #""}"#)
        #expect(await client.client.closed()?.code == 1009)
        // The node is unharmed.
        let next = try await ChatClient.connect(port: node.port, room: "lobby")
        next.say("fine")
        #expect(await next.waitForFrames(1))
    }

    @Test func invalidUTF8ClosesWith1007() async throws {
        let node = try await NodeProcess.start()
        let client = try await ChatClient.connect(port: node.port, room: "lobby")
        client.client.send(textBytes: [0x7b, 0xc3, 0x28, 0x7d])
        #expect(await client.client.closed()?.code == 1007)
    }

    @Test func aClientThatDoesNotReadIsClosedWith4008AndDelaysNoOne() async throws {
        let node = try await NodeProcess.start(arguments: ["--max-queued-messages", "64", "--capacity", "10000", "--log-connections"])
        let slow = try await ChatClient.connect(port: node.port, room: "firehose")
        let fast = try await ChatClient.connect(port: node.port, room: "firehose")
        let sender = try await ChatClient.connect(port: node.port, room: "firehose")
        slow.client.setReading(false)
        let big = String(repeating: "x", count: 16 * 1024)
        // The sender and the fast client read on the test's (debug-built) event loop, which also masks 9.6 MB
        // of outgoing frames: at about 3 MB/s per reader they stay fast readers in the node's eyes, while the
        // client that never reads still fills its socket and its queue.
        for index in 0..<600 {
            sender.say("\(index)-\(big)")
            try await Task.sleep(for: .milliseconds(5))
        }
        #expect(await fast.waitForFrames(600, timeout: .seconds(30)))
        #expect(fast.messages.count == 600)
        #expect(sender.client.isOpen)
        slow.client.setReading(true)
        let close = await slow.client.closed(timeout: .seconds(10))
        #expect(close != nil)
        // The close frame waits behind the backlog the node drops when it gives up on the socket, so this
        // client may never read it: the node's own account is the check, and any code the client got is 4008.
        if let code = close?.code { #expect(code == 4008) }
        // The client may see the socket close a moment before the node has written its log line.
        #expect(await eventually { node.log.contains("code=4008") }, "the node logs the code it closed the slow client with")
        let metrics = try await node.get("/metrics").body
        #expect(NodeFaultTests.counter("channels_slow_client_closes_total", in: metrics) == 1)
    }

    @Test func originsOutsideTheAllowlistGet403() async throws {
        let node = try await NodeProcess.start(arguments: ["--allowed-origin", "http://chat.example"])
        let evil = try await ChatClient.connect(port: node.port, room: "lobby", headers: [("Origin", "http://evil.example")])
        let close = await evil.client.closed()
        #expect(close?.code == 4403)
        #expect(close?.reason == "origin http://evil.example is not allowed")
        let refused = try await httpGet(port: node.port, path: "/ws/chat/lobby/", headers: ["Origin": "http://evil.example"])
        #expect(refused.status == 403 && refused.body.contains("origin http://evil.example is not allowed"))
        let allowed = try await ChatClient.connect(port: node.port, room: "lobby", headers: [("Origin", "http://chat.example")])
        allowed.say("ok")
        #expect(await allowed.waitForFrames(1))
    }

    @Test func unknownPathsAndBadRoomsAreRefused() async throws {
        let node = try await NodeProcess.start()
        await #expect {
            _ = try await WebSocketClient.connect(host: "127.0.0.1", port: node.port, path: "/ws/nothing/")
        } throws: { error in
            (error as? WebSocketClient.ConnectError)?.status == 404
        }
        // A room name that makes an invalid group: accepted as WebSocket, then closed with 1008 and the rule.
        let client = try await ChatClient.connect(port: node.port, room: "bad%20room")
        let badRoomClose = await client.client.closed()
        #expect(badRoomClose?.code == 1008)
        #expect(badRoomClose?.reason.hasPrefix("invalid room 'bad room': use ASCII letters, digits") == true, "\(badRoomClose?.reason ?? "")")
    }

    @Test func metricsCountConnectionsAndMessages() async throws {
        let node = try await NodeProcess.start()
        let client = try await ChatClient.connect(port: node.port, room: "lobby")
        client.say("one")
        #expect(await client.waitForFrames(1))
        let metrics = try await node.get("/metrics").body
        for name in [
            "channels_connections 1", "channels_connections_total 1", "channels_messages_in_total 1", "channels_messages_out_total 1",
            "channels_groups", "channels_fanout_deliveries_total", "channels_dropped_total", "channels_redis_reconnects_total",
            "channels_publish_to_deliver_seconds_bucket",
        ] {
            #expect(metrics.contains(name), "missing \(name)")
        }
        // The chat consumer's messages go out through a forward rule; their publish-to-deliver latency is recorded.
        #expect(NodeFaultTests.counter("channels_publish_to_deliver_seconds_count", in: metrics) == 1)
    }

    @Test func clientsVanishingMidFloodLeaveNothingBehindAndTheNodeStillDrains() async throws {
        let node = try await NodeProcess.start(arguments: ["--capacity", "1000"])
        var clients: [ChatClient] = []
        for _ in 0..<20 { clients.append(try await ChatClient.connect(port: node.port, room: "flood")) }
        for index in 0..<3000 { clients[index % 4].say("\(index)") }
        try await Task.sleep(for: .milliseconds(50))
        // Gone without a closing handshake while messages are still flowing to them.
        for client in clients { client.client.abort() }
        let released = await eventually(timeout: .seconds(15)) {
            (try? await node.get("/metrics").body.contains("channels_connections 0")) == true
        }
        #expect(released, "connections stayed registered after their clients vanished")
        node.terminate()
        #expect(await node.exitStatus(timeout: .seconds(15)) == 0)
    }

    @Test func aBadRedisPasswordStopsTheNodeWithOneClearError() async throws {
        let redis = try await RedisServer.start(password: "right")
        let node = try await NodeProcess.start(redis: ["redis://:wrong@127.0.0.1:\(redis.port)"], waitForReady: false)
        #expect(await node.exitStatus(timeout: .seconds(15)) == 1)
        #expect(node.log.contains("WRONGPASS"))
        #expect(node.log.components(separatedBy: "WRONGPASS").count - 1 <= 2)
    }
}
