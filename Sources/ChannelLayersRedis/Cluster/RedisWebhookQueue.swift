import ChannelLayers
import HiredisClient

/// The webhook events of the cluster's state changes (``ClusterScripts``): a Redis stream that the scripts
/// append to, read and trimmed by the one node holding the sender's lease.
struct RedisWebhookQueue: WebhookEventQueue {
    let client: any RedisCommandSender
    let base: String
    let nodeID: String

    private var stream: String { base + "webhooks" }

    func recordEvents(for ttl: Duration) async throws(ChannelLayerError) {
        try await run(RedisCommand("SET", .string(base + "webhooks:on"), "1", "PX", .integer(Self.milliseconds(ttl))), doing: "turning webhook events on")
    }

    func lead(for lease: Duration) async throws(ChannelLayerError) -> Bool {
        let reply = try await run(
            RedisCommand("EVAL", .string(ClusterScripts.lead), 1, .string(base), .string(nodeID), .integer(Self.milliseconds(lease))),
            doing: "taking the webhook sender's lease"
        )
        return reply.integer == 1
    }

    func oldest(_ limit: Int) async throws(ChannelLayerError) -> [WebhookEvent] {
        let reply = try await run(RedisCommand("XRANGE", .string(stream), "-", "+", "COUNT", .integer(limit)), doing: "reading webhook events")
        return (reply.array ?? []).compactMap { entry -> WebhookEvent? in
            guard let parts = entry.array, parts.count == 2, let id = parts[0].string, let fields = parts[1].array, fields.count >= 2,
                let json = fields[1].string
            else { return nil }
            return WebhookEvent(id: id, json: json)
        }
    }

    func delivered(_ events: [WebhookEvent]) async throws(ChannelLayerError) {
        guard !events.isEmpty else { return }
        try await run(RedisCommand("XDEL", arguments: [.string(stream)] + events.map { .string($0.id) }), doing: "forgetting delivered webhook events")
    }

    func dropped() async throws(ChannelLayerError) -> Int {
        Int(try await run(RedisCommand("GET", .string(base + "webhooks:dropped")), doing: "reading dropped webhook events").integer ?? 0)
    }

    @discardableResult
    private func run(_ command: RedisCommand, doing what: String) async throws(ChannelLayerError) -> RedisReply {
        let reply: RedisReply
        do {
            reply = try await client.send(command)
        } catch {
            throw ChannelLayerError(error, doing: what)
        }
        if case .error(let text) = reply { throw ChannelLayerError(.unavailable, "\(what): \(text)") }
        return reply
    }

    private static func milliseconds(_ duration: Duration) -> Int {
        Int(duration.components.seconds) * 1000 + Int(duration.components.attoseconds / 1_000_000_000_000_000)
    }
}
