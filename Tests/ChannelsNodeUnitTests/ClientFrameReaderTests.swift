@testable import ChannelsNode
import NIOCore
import NIOWebSocket
import Testing

@Suite struct ClientFrameReaderTests {
    typealias Failure = ClientFrameReader.Failure

    /// What came out of the reader: opcode, RSV1, unmasked payload.
    struct Read: Equatable {
        let opcode: WebSocketOpcode
        let rsv1: Bool
        let text: String
    }

    static func frame(_ opcode: WebSocketOpcode, _ text: String, fin: Bool = true, rsv1: Bool = false, masked: Bool = true) -> ByteBuffer {
        ConnectionHarness.encode(opcode, Array(text.utf8), fin: fin, rsv1: rsv1, masked: masked)
    }

    /// Feeds each read in order; what came out, or the first failure.
    static func read(_ reads: [ByteBuffer], max: Int = 1000) -> Result<[Read], Failure> {
        var reader = ClientFrameReader()
        var out: [Read] = []
        do throws(Failure) {
            for var bytes in reads {
                while let frame = try reader.next(from: &bytes, maxMessageSize: max) {
                    out.append(Read(opcode: frame.opcode, rsv1: frame.rsv1, text: String(buffer: frame.unmaskedData)))
                }
                #expect(bytes.readableBytes == 0, "a read is always taken whole")
            }
        } catch {
            return .failure(error)
        }
        return .success(out)
    }

    static func joined(_ frames: [ByteBuffer]) -> ByteBuffer {
        var all = ByteBuffer()
        for var frame in frames { all.writeBuffer(&frame) }
        return all
    }

    @Test func framesOfOneReadComeOutInOrder() {
        let bytes = Self.joined([Self.frame(.text, "one"), Self.frame(.ping, "p"), Self.frame(.binary, String(repeating: "x", count: 300))])
        #expect(Self.read([bytes]) == .success([
            Read(opcode: .text, rsv1: false, text: "one"), Read(opcode: .ping, rsv1: false, text: "p"),
            Read(opcode: .binary, rsv1: false, text: String(repeating: "x", count: 300)),
        ]))
    }

    /// Every place a read can end: within the first header, the key, the payload, between frames.
    @Test func framesCutAtEveryByteComeOutWhole() {
        let bytes = Self.joined([Self.frame(.text, "first"), Self.frame(.text, String(repeating: "y", count: 200))])
        let expected: Result<[Read], Failure> = .success([
            Read(opcode: .text, rsv1: false, text: "first"), Read(opcode: .text, rsv1: false, text: String(repeating: "y", count: 200)),
        ])
        for cut in 0...bytes.readableBytes {
            #expect(Self.read([bytes.getSlice(at: 0, length: cut)!, bytes.getSlice(at: cut, length: bytes.readableBytes - cut)!]) == expected, "cut at \(cut)")
        }
        // A byte a read.
        #expect(Self.read((0..<bytes.readableBytes).map { bytes.getSlice(at: $0, length: 1)! }) == expected)
    }

    @Test func fragmentsAreJoinedWithTheFirstsRSV1AndControlFramesBetweenThem() {
        let reads = [
            Self.frame(.text, "frag", fin: false, rsv1: true), Self.frame(.pong, ""),
            Self.frame(.continuation, "men", fin: false), Self.frame(.continuation, "ted"),
        ]
        #expect(Self.read(reads) == .success([Read(opcode: .pong, rsv1: false, text: ""), Read(opcode: .text, rsv1: true, text: "fragmented")]))
        // In one read as well.
        #expect(Self.read([Self.joined(reads)]) == Self.read(reads))
    }

    /// The connection closes unmasked frames with 1002: they are handed on as they came.
    @Test func unmaskedFramesGoOnAsTheyAre() throws {
        var reader = ClientFrameReader()
        var bytes = Self.joined([Self.frame(.text, "a", fin: false), Self.frame(.continuation, "b", masked: false)])
        #expect(try reader.next(from: &bytes, maxMessageSize: 100)?.maskKey == nil)
        var plain = Self.frame(.text, "x", fin: false, masked: false)
        #expect(try reader.next(from: &plain, maxMessageSize: 100)?.maskKey == nil)
    }

    @Test func messagesOverTheLimitFailWhetherOneFrameOrJoined() {
        #expect(Self.read([Self.frame(.text, String(repeating: "z", count: 101))], max: 100) == .failure(.tooLarge))
        // Refused from the header alone, before the payload arrives.
        let header = Self.frame(.text, String(repeating: "z", count: 101)).getSlice(at: 0, length: 4)!
        #expect(Self.read([header], max: 100) == .failure(.tooLarge))
        let parts = [Self.frame(.text, String(repeating: "z", count: 60), fin: false), Self.frame(.continuation, String(repeating: "z", count: 41))]
        #expect(Self.read(parts, max: 100) == .failure(.tooLarge))
    }

    @Test func outOfOrderFragmentsAndBrokenFramesAreProtocolErrors() {
        let cases: [[ByteBuffer]] = [
            [Self.frame(.continuation, "no start")],
            [Self.frame(.text, "a", fin: false), Self.frame(.text, "b")],
            [Self.frame(.ping, "p", fin: false)],
            [Self.frame(.ping, String(repeating: "p", count: 126))],
            [Self.frame(.text, "a", fin: false)] + Array(repeating: Self.frame(.continuation, "", fin: false), count: ClientFrameReader.maxFragments),
        ]
        for reads in cases {
            guard case .failure(.protocolError) = Self.read(reads) else {
                Issue.record("\(reads.count) reads were not refused")
                continue
            }
        }
    }

    /// A flood whose every read ends within a frame: what the reader keeps stays one frame and one read, not
    /// everything read so far.
    @Test func readsThatEndMidFrameKeepOnlyTheCutFrame() throws {
        var reader = ClientFrameReader()
        var stream = ByteBuffer()
        for index in 0..<2000 {
            var frame = Self.frame(.text, "\(index)-" + String(repeating: "f", count: 1000))
            stream.writeBuffer(&frame)
        }
        var frames = 0
        var largest = 0
        while stream.readableBytes > 0 {
            // Reads of 4,000 bytes: each ends inside a frame of about 1,010.
            var read = ByteBuffer()
            var piece = stream.readSlice(length: min(4000, stream.readableBytes))!
            read.writeBuffer(&piece)
            while let frame = try reader.next(from: &read, maxMessageSize: 4096) {
                #expect(String(buffer: frame.unmaskedData).hasPrefix("\(frames)-"))
                frames += 1
            }
            largest = max(largest, reader.heldCapacity)
        }
        #expect(frames == 2000)
        #expect(largest <= 16 * 1024, "kept \(largest) bytes for a cut frame")
        #expect(reader.heldCapacity == 0)
    }
}
