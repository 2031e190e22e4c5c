import ChannelLayers
import ChannelsNode
import ChannelsProtocol
import OrderedCollections


/// The chat consumer of the seed article: `/ws/chat/<room>/` joins group `chat_<room>`; a text frame
/// `{"message": "..."}` is group-sent as `{"type": "chat.message", "message": ...}`; every member, the sender
/// too, receives `{"message": "..."}`. A Django process calling
/// `group_send("chat_lobby", {"type": "chat.message", "message": "hi"})` on the same Redis reaches it.
///
/// A frame that is not JSON, or lacks a string `message`, is answered per the node's invalid-frame policy.
/// Group-sent messages also carry `sent_at` (Unix seconds) for the node's publish-to-deliver histogram.
public final class ChatConsumer: WebSocketConsumer {
    /// `chat.message` events go to the client as `{"message": ...}`, without waking a task. Django's consumer
    /// would fail on a missing key; answering with an empty string keeps the room alive.
    public static var forwardRules: [String: ForwardRule] { ["chat_message": ForwardRule(fields: ["message"], missing: "")] }

    let context: ConsumerContext
    private var roomGroupName = ""

    public init(context: ConsumerContext) {
        self.context = context
    }

    public func connect() async throws -> ConnectDecision {
        let room = context.scope.parameters["room"] ?? ""
        roomGroupName = "chat_\(room)"
        guard ChannelNames.isValidGroup(roomGroupName) else {
            // A close reason holds 123 bytes: the name is cut to fit beside the rule.
            var name = String(room.prefix(30))
            while name.utf8.count > 30 { name.removeLast() }
            return .reject(
                code: CloseCode.policyViolation,
                reason: "invalid room '\(name)': use ASCII letters, digits, '-', '_', '.', at most 94 characters"
            )
        }
        if let allowed = context.scope.user?["groups"]?.array?.compactMap(\.string), !allowed.contains(roomGroupName) {
            return .reject(code: CloseCode.policyViolation, reason: "your token does not allow \(roomGroupName)")
        }
        // Chat rooms are small: members see who is there (`?presence=1`).
        try await context.groupAdd(roomGroupName, presence: true)
        return .accept
    }

    public func receive(text: String) async throws {
        let frame: [String: MessageValue]
        do {
            frame = Dictionary(uniqueKeysWithValues: try ClientFrame.decode(text, limits: .init(maxBytes: context.limits.maxMessageSize)).map { ($0.key, $0.value) })
        } catch {
            context.refuse(error.code == .invalidJSON ? .invalidJSON : .invalidFrame, detail: error.message)
            return
        }
        guard let message = frame["message"]?.string else {
            context.refuse(.invalidFrame, detail: #"a chat frame is {"message": "<text>"}"#)
            return
        }
        // Deferred: a room's messages go to Redis back to back, not a round trip apart; a refusal still reaches
        // the client as an error frame naming its message.
        try await context.groupSend(
            ["type": "chat.message", "message": .string(message), "sent_at": .double(WallClock.now())], to: roomGroupName, confirmation: .deferred
        )
    }
}
