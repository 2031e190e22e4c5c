import ChannelLayers
import ChannelsProtocol
import NIOCore
import NIOHTTP1
import OrderedCollections

extension ServerAPI {
    /// `GET /api/events[?group=G]`: server-sent events for the admin page. A `snapshot` event (nodes with
    /// their rates, groups with theirs, Redis, and with `group` its members, presence and recent history)
    /// whenever it changed, checked every second, and a comment every 15 s so proxies keep the stream open.
    func events(group: String?) throws(APIError) -> HTTPAnswer {
        let watched = try group.map { text throws(APIError) in try Self.group(text) }
        let (stream, continuation) = AsyncStream.makeStream(of: ByteBuffer.self, bufferingPolicy: .bufferingNewest(4))
        let producer = Task { [self] in
            var last = ""
            var quietSince = ContinuousClock.now
            continuation.yield(ByteBuffer(string: "retry: 2000\n\n"))
            while !Task.isCancelled {
                // Compared without its time, which changes each time.
                let body = (try? JSON.serialize(Self.jsonSafe(await snapshot(group: watched)))) ?? "{}"
                if body != last {
                    last = body
                    quietSince = .now
                    let stamped = #"{"at":"# + String(WallClock.now()) + (body.count > 2 ? "," : "") + body.dropFirst()
                    continuation.yield(ByteBuffer(string: "event: snapshot\ndata: \(stamped)\n\n"))
                } else if ContinuousClock.now - quietSince > .seconds(15) {
                    quietSince = .now
                    continuation.yield(ByteBuffer(string: ": keep-alive\n\n"))
                }
                try? await Task.sleep(for: .seconds(1))
            }
            continuation.finish()
        }
        continuation.onTermination = { _ in producer.cancel() }
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
