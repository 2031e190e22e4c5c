import ChannelsTestSupport
import ChannelsWebSocketClient
import Foundation
import Synchronization
import Testing

/// permessage-deflate (issue 25): our Swift client and Python `websockets` negotiate it with nodes sharing
/// Redis and exchange messages both ways; a client without it still works; a zip bomb closes 1009; a compressed
/// frame without the extension closes 1002; a history group's replay comes compressed.
@Suite struct CompressionTests {
    static func connect(_ port: Int, room: String, query: String? = nil, compression: Bool, received: TextBuffer) async throws -> WebSocketClient {
        try await WebSocketClient.connect(
            host: "127.0.0.1", port: port, path: "/ws/chat/\(room)/" + (query.map { "?\($0)" } ?? ""), compression: compression,
            onMessage: { message in
                if case .text(let text) = message { received.text.withLock { $0 += text + "\n" } }
            }
        )
    }

    static func messages(_ buffer: TextBuffer) -> [String] {
        buffer.text.withLock { $0 }.split(separator: "\n").compactMap { line in
            (try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?["message"] as? String
        }
    }

    @Test func swiftClientsOnTwoNodesExchangeCompressedMessagesBesideAPlainOne() async throws {
        let redis = try await RedisServer.start()
        let first = try await NodeProcess.start(redis: [redis.url])
        let second = try await NodeProcess.start(redis: [redis.url])
        defer { first.terminate(); second.terminate() }
        let (gotA, gotB, gotPlain) = (TextBuffer(), TextBuffer(), TextBuffer())
        let a = try await Self.connect(first.port, room: "z", compression: true, received: gotA)
        let b = try await Self.connect(second.port, room: "z", compression: true, received: gotB)
        let plain = try await Self.connect(second.port, room: "z", compression: false, received: gotPlain)
        #expect(a.isCompressed && b.isCompressed && !plain.isCompressed)

        let long = String(repeating: "a model update of a few KiB ", count: 100)
        a.send(text: #"{"message": "\#(long)"}"#)
        b.send(text: #"{"message": "short"}"#)
        for buffer in [gotA, gotB, gotPlain] {
            #expect(await eventually { Set(Self.messages(buffer)) == [long, "short"] }, "\(Self.messages(buffer).map(\.count))")
        }
        // The long one came compressed to both compressing clients; the short one (under 256 bytes) did not.
        #expect(a.compressedMessagesReceived == 1 && b.compressedMessagesReceived == 1, "\(a.compressedMessagesReceived) \(b.compressedMessagesReceived)")
        #expect(plain.compressedMessagesReceived == 0)
        let metrics = try await first.get("/metrics")
        #expect(metrics.body.contains("channels_compressed_connections_total 1"))
    }

    @Test func pythonWebsocketsNegotiatesAndExchangesAcrossNodes() async throws {
        let redis = try await RedisServer.start()
        let first = try await NodeProcess.start(redis: [redis.url])
        let second = try await NodeProcess.start(redis: [redis.url])
        defer { first.terminate(); second.terminate() }
        let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Wire/deflate_client.py").path
        let python = try PythonProcess(
            python: try PythonProcess.interpreter(packageRoot: packageRoot), script: script, arguments: [String(first.port), String(second.port)]
        )
        #expect(try await python.nextLine() == "negotiated True")
        #expect(try await python.nextLine() == "long True")
        #expect(try await python.nextLine() == "short True")
    }

    @Test func aZipBombClosesWith1009AndACompressedFrameWithoutTheExtensionWith1002() async throws {
        let node = try await NodeProcess.start()
        defer { node.terminate() }
        #expect(try await WireTests.run("zip-bomb", port: node.port) == "close 1009")
        #expect(try await WireTests.run("rsv1-plain", port: node.port) == "close 1002")
        let metrics = try await node.get("/metrics")
        #expect(metrics.body.contains("channels_inflated_too_large_total 1"))
        // With --compression off the node offers nothing: the bomb cannot even be sent compressed.
        let off = try await NodeProcess.start(arguments: ["--compression", "off"])
        defer { off.terminate() }
        #expect(try await WireTests.run("zip-bomb", port: off.port) == "not negotiated")
    }

    /// A message in several frames, each masked with its own key, plain or compressed (RSV1 on the first).
    @Test func fragmentedMessagesArriveWholePlainOrCompressed() async throws {
        let node = try await NodeProcess.start()
        defer { node.terminate() }
        let plain = try await WireTests.run("fragments", port: node.port)
        #expect(plain.hasPrefix("text ") && plain.contains(#""message":"fragmented""#), "\(plain)")
        let compressed = try await WireTests.run("fragments-deflate", port: node.port)
        #expect(compressed.hasPrefix("text ") && compressed.contains("fragmented and compressed"), "\(compressed)")
    }

    @Test func aHistoryGroupsReplayComesCompressed() async throws {
        let redis = try await RedisServer.start()
        let node = try await NodeProcess.start(redis: [redis.url])
        defer { node.terminate() }
        let publisherGot = TextBuffer()
        let publisher = try await Self.connect(node.port, room: "replay", compression: false, received: publisherGot)
        let long = String(repeating: "r", count: 600)
        for index in 0..<3 { publisher.send(text: #"{"message": "\#(index)-\#(long)"}"#) }
        #expect(await eventually { Self.messages(publisherGot).count == 3 })
        let epochs = publisherGot.text.withLock { $0 }.split(separator: "\n").compactMap {
            (try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])?["epoch"] as? String
        }
        let epoch = try #require(epochs.first)
        let got = TextBuffer()
        let reader = try await Self.connect(node.port, room: "replay", query: "recover=1&epoch=\(epoch)&offset=0", compression: true, received: got)
        #expect(await eventually { Self.messages(got).count == 3 }, "\(got.text.withLock { $0 })")
        #expect(Self.messages(got) == (0..<3).map { "\($0)-\(long)" })
        #expect(reader.compressedMessagesReceived >= 3, "\(reader.compressedMessagesReceived)")
    }
}
