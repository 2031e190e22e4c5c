import ChannelLayers
import ChannelsProtocol
import NIOCore
import NIOHTTP1
import OrderedCollections

extension ServerAPI {
    /// `GET /api/events[?group=G]`: server-sent events for the admin page. A `snapshot` event (nodes with
    /// their rates, groups with theirs, Redis, and with `group` its members, presence and recent history)
    /// whenever it changed, checked every second, and a comment every 15 s so proxies keep the stream open.
    /// Streams watching the same thing share one snapshot per second (``EventStreamHub``); past
    /// `--api-max-event-streams` open streams: 503.
    func events(group: String?) throws(APIError) -> HTTPAnswer {
        let watched = try group.map { text throws(APIError) in try Self.group(text) }
        let stream = streams.subscribe(group: watched) { [self] group in
            // Compared without its time by the hub, which stamps it.
            (try? JSON.serialize(Self.jsonSafe(await snapshot(group: group)))) ?? "{}"
        }
        guard let stream else {
            throw APIError(
                .serviceUnavailable, "too_many_streams",
                "this node serves \(streams.limit) event streams at once (--api-max-event-streams); close one (another admin tab?) or retry later",
                headers: ["Retry-After": "5"]
            )
        }
        return HTTPAnswer(
            status: .ok,
            headers: ["Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-store", "X-Accel-Buffering": "no"],
            body: ByteBuffer(), stream: stream
        )
    }

    /// What the admin page shows, in one object.
    func snapshot(group: String?) async -> MessageValue {
        let reports = await reports()
        var rates: [String: Double] = [:]
        for report in reports.values {
            // A group's rate is what its busiest node saw: every node with members gets every message.
            for (name, rate) in report["group_rates"]?.map ?? [:] {
                rates[name] = max(rates[name] ?? 0, rate.double ?? 0)
            }
        }
        var answer: OrderedDictionary<String, MessageValue> = ["node": .string(nodeID)]
        answer.merge(scopeFields) { $1 }
        answer["nodes"] = await value { () throws(APIError) in .array(try await nodeRows(reports: reports)) }
        answer["groups"] = await value { () throws(APIError) in .array(try await groupRows(pattern: "*", rates: rates)) }
        answer["redis"] = await backendInfo()
        if let group {
            var detail: OrderedDictionary<String, MessageValue> = ["name": .string(group)]
            detail["members"] = await value { () throws(APIError) in .array(try await memberRows(of: group, limit: 200)) }
            detail["presence"] = await value { () throws(APIError) in .array(try await presenceRows(of: group)) }
            detail["history"] = await value { () throws(APIError) in .map(try await historyFields(of: group, since: nil, limit: 20)) }
            detail["messages_per_second"] = .double(Self.rounded(rates[group] ?? 0))
            answer["group"] = .map(detail)
        }
        return .map(answer)
    }

    /// The value, or `{"error": {code, message}}` in its place: one failing part does not blank the page.
    private func value(_ make: () async throws(APIError) -> MessageValue) async -> MessageValue {
        do {
            return try await make()
        } catch {
            return ["error": ["code": .string(error.code), "message": .string(error.message)]]
        }
    }
}
