import ChannelsProtocol
import Foundation
import Testing

/// Replays the fuzz seeds (`Fuzz/Corpus`) and every input a fuzzer ever failed on (`Fuzz/Regressions`)
/// through the decoders, with the fuzz targets' invariants: no crash, and a value that decodes encodes back
/// to itself.
@Suite struct FuzzRegressionTests {
    static let fuzzRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fuzz")

    static func inputs(_ target: String) -> [(String, [UInt8])] {
        ["Corpus", "Regressions"].flatMap { folder -> [(String, [UInt8])] in
            let directory = fuzzRoot.appendingPathComponent(folder).appendingPathComponent(target)
            let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
            return names.sorted().compactMap { name in
                (try? Data(contentsOf: directory.appendingPathComponent(name))).map { ("\(folder)/\(target)/\(name)", [UInt8]($0)) }
            }
        }
    }

    @Test func seedsExistForEveryTarget() {
        for target in ["FuzzMessagePack", "FuzzJSON", "FuzzClientFrame", "FuzzNames", "FuzzWebSocketFrames"] {
            #expect(!Self.inputs(target).isEmpty, "no inputs for \(target)")
        }
    }

    @Test func messagePackInputs() throws {
        let limits = MessagePack.Limits(maxSize: 1 << 20, maxDepth: 32)
        for (name, bytes) in Self.inputs("FuzzMessagePack") {
            guard let value = try? MessagePack.decode(bytes, limits: limits) else { continue }
            #expect(try MessagePack.decode(MessagePack.encode(value), limits: limits) == value, "\(name)")
        }
    }

    @Test func jsonInputs() throws {
        for (name, bytes) in Self.inputs("FuzzJSON") {
            guard let value = try? JSON.parse(bytes: bytes, limits: .init(maxSize: 64 * 1024, maxDepth: 32)),
                let text = try? JSON.serialize(value)
            else { continue }
            #expect(try JSON.parse(text) == value, "\(name)")
        }
    }

    @Test func clientFrameInputs() throws {
        for (name, bytes) in Self.inputs("FuzzClientFrame") {
            let text = String(decoding: bytes, as: UTF8.self)
            guard let object = try? ClientFrame.decode(text), let encoded = try? ClientFrame.encode(object) else { continue }
            #expect(try ClientFrame.decode(encoded) == object, "\(name)")
        }
    }

    @Test func nameInputs() {
        for (name, bytes) in Self.inputs("FuzzNames") {
            let text = String(decoding: bytes, as: UTF8.self)
            let valid = ChannelNames.isValidGroup(text) || ChannelNames.isValidChannel(text)
            #expect(!valid || (text.utf8.count < 100 && text.utf8.allSatisfy { $0 < 0x80 }), "\(name)")
        }
    }

    @Test func webSocketFrameInputs() {
        for (name, bytes) in Self.inputs("FuzzWebSocketFrames") {
            var offset = 0
            bytes.withUnsafeBytes { raw in
                while offset < raw.count {
                    let rest = UnsafeRawBufferPointer(rebasing: raw[offset...])
                    guard let header = try? WebSocketFrameHeader.parse(rest, maxPayload: 4096) else { return }
                    #expect((2...14).contains(header.headerLength) && header.headerLength <= rest.count, "\(name)")
                    #expect(!header.isControl || (header.fin && header.payloadLength <= 125), "\(name)")
                    let shorter = UnsafeRawBufferPointer(rebasing: rest[..<(header.headerLength - 1)])
                    #expect((try? WebSocketFrameHeader.parse(shorter, maxPayload: 4096)) == .some(nil), "\(name)")
                    offset += header.headerLength + header.payloadLength
                }
            }
        }
    }
}
