import ChannelsNode
import ChannelsProtocol

/// The live-updates app of seed 002 (Django REST framework pushing model changes): `/ws/updates/<model>/`
/// joins group `updates_<model>`, and each `model.changed` event a Django signal group-sends there, on
/// either Redis layer, reaches the client as `{"action", "model", "pk", "data"}`.
///
/// The Django side is `examples/django-live-updates/`; clients only listen, so a frame from one is refused.
public final class UpdatesConsumer: WebSocketConsumer {
    /// Forwarded on the event loop, encoded once for every member.
    public static var forwardRules: [String: ForwardRule] {
        ["model_changed": ForwardRule(fields: ["action", "model", "pk", "data"])]
    }

    let context: ConsumerContext

    public init(context: ConsumerContext) {
        self.context = context
    }

    public func connect() async throws -> ConnectDecision {
        let model = context.scope.parameters["model"] ?? ""
        let group = "updates_\(model)"
        guard ChannelNames.isValidGroup(group) else {
            return .reject(
                code: CloseCode.policyViolation,
                reason: "invalid model '\(model.prefix(40))': group names are ASCII letters, digits, '-', '_' or '.', under 100 characters"
            )
        }
        // Joined before the upgrade completes: a change saved right after the page connects is not missed.
        try await context.groupAdd(group)
        return .accept
    }

    public func receive(text: String) async throws {
        context.refuse(.invalidFrame, detail: "this endpoint only sends model changes; it takes no frames")
    }
}
