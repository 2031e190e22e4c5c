import ChannelLayers
import ChannelLayersRedis
import ChannelsProtocol
import ChannelsTestSupport
import Foundation
import HiredisClient
import OrderedCollections
import Testing

/// The real Python channels_redis (from PyPI, in the venv `scripts/setup-interop` makes) on the same Redis.
@Suite struct ChannelsRedisInteropTests {
    func python(_ arguments: String...) throws -> PythonProcess { try Interop.python(arguments) }

    func expectReady(_ process: PythonProcess) async throws -> String { try await Interop.ready(process) }

    func layerConfiguration(_ servers: [RedisServer], node: String) -> RedisPubSubChannelLayer.Configuration {
        var configuration = RedisPubSubChannelLayer.Configuration(hosts: servers.map { $0.configuration() })
        configuration.nodeID = node
        return configuration
    }

    @Test func msgpackBytesMatchPython() async throws {
        let json = #"{"type":"chat.message","message":"h\u00e9llo","n":-200,"big":1099511627776,"f":0.1,"ok":false,"none":null,"list":[1,"two",[3]],"map":{"k":"v"},"long":"\#(String(repeating: "x", count: 300))","bytes_hex":"00ff10"}"#
        let process = try python("encode", json)
        let pythonHex = try await process.nextLine()
        var message = Message(try JSON.parse(json).map!)
        message["bytes_hex"] = nil
        message["raw"] = .bytes([0x00, 0xff, 0x10])
        let swiftHex = MessagePack.encode(message).map { String(format: "%02x", $0) }.joined()
        #expect(swiftHex == pythonHex)
    }

    @Test func pythonGroupSendReachesSwiftMembers() async throws {
        let server = try await RedisServer.start()
        try await withRedisLayers([layerConfiguration([server], node: "swift-node")]) { layers in
            let channel = try await layers[0].newChannel()
            try await layers[0].groupAdd("chat_lobby", channel: channel)
            let sender = try python("group-send", server.url, "chat_lobby", #"{"type": "chat.message", "message": "hi from django", "bytes_hex": "0001ff"}"#)
            #expect(try await sender.nextLine() == "SENT")
            let message = try await layers[0].receive(from: channel)
            #expect(message == ["type": "chat.message", "message": "hi from django", "raw": .bytes([0, 1, 255])])
            #expect(try Array(message.fields.keys) == ["type", "message", "raw"] && message.handlerName() == "chat_message")
            #expect(await sender.wait() == 0)
        }
    }

    @Test func swiftGroupSendReachesAPythonConsumer() async throws {
        let server = try await RedisServer.start()
        try await withRedisLayers([layerConfiguration([server], node: "swift-node")]) { layers in
            let receiver = try python("receive-group", server.url, "chat_lobby", "2")
            _ = try await expectReady(receiver)
            try await layers[0].groupSend(["type": "chat.message", "message": "hi from swift"], to: "chat_lobby")
            try await layers[0].groupSend(["type": "chat.message", "message": "second", "raw": .bytes([7]), "n": 2.5], to: "chat_lobby")
            #expect(try await receiver.nextLine() == #"{"type": "chat.message", "message": "hi from swift"}"#)
            #expect(try await receiver.nextLine() == #"{"type": "chat.message", "message": "second", "raw": {"__bytes__": "07"}, "n": 2.5}"#)
            #expect(await receiver.wait() == 0)
        }
    }

    @Test func directSendsBothWays() async throws {
        let server = try await RedisServer.start()
        try await withRedisLayers([layerConfiguration([server], node: "swift-node")]) { layers in
            let receiver = try python("receive", server.url, "1")
            let pythonChannel = try await expectReady(receiver)
            #expect(pythonChannel.hasPrefix("asgispecific."))
            try await layers[0].send(["type": "direct.swift", "text": "to python"], to: pythonChannel)
            #expect(try await receiver.nextLine() == #"{"type": "direct.swift", "text": "to python"}"#)

            let swiftChannel = try await layers[0].newChannel()
            let sender = try python("send", server.url, swiftChannel, #"{"type": "direct.python", "text": "to swift"}"#)
            #expect(try await sender.nextLine() == "SENT")
            #expect(try await layers[0].receive(from: swiftChannel) == ["type": "direct.python", "text": "to swift"])
        }
    }

    /// `symmetric_encryption_keys` on the pub/sub layer: Fernet tokens published, any key decrypts, a
    /// message in another key is counted and dropped.
    @Test func encryptedBothWays() async throws {
        let server = try await RedisServer.start()
        var configuration = layerConfiguration([server], node: "swift-node")
        configuration.encryptionKeys = ["new-key", "old-key"]
        try await withRedisLayers([configuration]) { layers in
            let channel = try await layers[0].newChannel()
            try await layers[0].groupAdd("chat_secret", channel: channel)
            for (keys, text) in [("old-key", "one"), ("other-key", "lost"), ("new-key", "two")] {
                let sender = try python("--keys", keys, "group-send", server.url, "chat_secret", #"{"type": "chat.message", "message": "\#(text)"}"#)
                #expect(try await sender.nextLine() == "SENT")
            }
            #expect(try await layers[0].receive(from: channel)["message"] == "one")
            #expect(try await layers[0].receive(from: channel)["message"] == "two")
            #expect(layers[0].statistics.undecodable == 1)

            let receiver = try python("--keys", "new-key", "receive-group", server.url, "chat_back", "1")
            _ = try await expectReady(receiver)
            try await layers[0].groupSend(["type": "chat.message", "message": "encrypted"], to: "chat_back")
            #expect(try await receiver.nextLine() == #"{"type": "chat.message", "message": "encrypted"}"#)
        }
        var withHistory = layerConfiguration([server], node: "swift-node")
        withHistory.encryptionKeys = ["k"]
        withHistory.history = HistoryConfiguration(patterns: ["chat_*"])
        #expect(throws: ChannelLayerError.self) { try RedisPubSubChannelLayer(configuration: withHistory) }
    }

    @Test func shardedOverTwoRedisServersBothWays() async throws {
        let servers = [try await RedisServer.start(), try await RedisServer.start()]
        let hosts = servers.map(\.url).joined(separator: ",")
        // Groups that land on each of the two hosts, so both shards are crossed in both directions.
        let groups = ["chat_lobby", "chat_a", "chat_b", "chat_c", "chat_d"]
        #expect(Set(groups.map { ShardRing.index(of: "asgi__group__\($0)", hostCount: 2) }) == [0, 1])
        try await withRedisLayers([layerConfiguration(servers, node: "swift-node")]) { layers in
            for group in groups {
                let channel = try await layers[0].newChannel()
                try await layers[0].groupAdd(group, channel: channel)
                let sender = try python("group-send", hosts, group, #"{"type": "shard.test", "group": "\#(group)"}"#)
                #expect(try await sender.nextLine() == "SENT")
                #expect(try await layers[0].receive(from: channel)["group"] == .string(group))

                let receiver = try python("receive-group", hosts, group, "1")
                _ = try await expectReady(receiver)
                try await layers[0].groupSend(["type": "shard.back", "group": .string(group)], to: group)
                #expect(try await receiver.nextLine() == #"{"type": "shard.back", "group": "\#(group)"}"#)
            }
            // Direct channels are sharded by their full name as well.
            let receiver = try python("receive", hosts, "1")
            let pythonChannel = try await expectReady(receiver)
            try await layers[0].send(["type": "direct.sharded"], to: pythonChannel)
            #expect(try await receiver.nextLine() == #"{"type": "direct.sharded"}"#)
        }
    }
}
