import ChannelsNode
import ChannelsProtocol

/// Live cursors on a shared board: `/ws/cursors/<board>/` joins group `cursors_<board>`.
///
/// A client sends its pointer as a 4-byte binary frame, `x` and `y` as big-endian UInt16. Every other
/// member of the board, on any node, receives 12 bytes: the sender's 8-byte id, then those 4 bytes.
/// A text frame, or a binary frame of another size, is answered with an `invalid_frame` error frame.
public final class CursorConsumer: WebSocketConsumer {
    public static var acceptsBinary: Bool { true }
    public static var messageHandlers: [String: Handler] { ["cursor_moved": CursorConsumer.cursorMoved] }

    let context: ConsumerContext
    private var group = ""

    public init(context: ConsumerContext) {
        self.context = context
    }

    public func connect() async throws -> ConnectDecision {
        group = "cursors_\(context.scope.parameters["board"] ?? "")"
        guard ChannelNames.isValidGroup(group) else {
            return .reject(code: CloseCode.policyViolation, reason: "invalid board: use ASCII letters, digits, '-', '_', '.'")
        }
        try await context.groupAdd(group)
        return .accept
    }

    public func receive(binary: [UInt8]) async throws {
        guard binary.count == 4 else {
            context.refuse(.invalidFrame, detail: "a cursor is 4 bytes: x and y as big-endian UInt16")
            return
        }
        try await context.groupSend(["type": "cursor.moved", "from": .string(context.channelName), "xy": .bytes(binary)], to: group)
    }

    public func receive(text: String) async throws {
        context.refuse(.invalidFrame, detail: "send cursors as 4-byte binary frames")
    }

    func cursorMoved(_ message: Message) async throws {
        guard let from = message["from"]?.string, from != context.channelName, let xy = message["xy"]?.bytes, xy.count == 4 else { return }
        context.send(binary: Self.id(of: from) + xy)
    }

    /// A short stable id for a channel name (FNV-1a, 64 bits), so frames stay small.
    public static func id(of channel: String) -> [UInt8] {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in channel.utf8 {
            hash ^= UInt64(byte)
            hash &*= 0x0000_0100_0000_01b3
        }
        return (0..<8).map { UInt8(truncatingIfNeeded: hash >> (56 - 8 * $0)) }
    }
}
