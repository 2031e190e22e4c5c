import ChannelLayers
import ChannelsProtocol
import CoreMetrics
import NIOCore
import NIOHTTP1
import OrderedCollections

extension ServerAPI {
    // MARK: - Publishing

    func sendToGroup(_ group: String, _ message: Message) async throws(APIError) -> HTTPAnswer {
        let position: HistoryPosition?
        do {
            position = try await layer.groupSendReportingPosition(message, to: group)
        } catch {
            throw Self.failure(error, doing: "sending to group \(group)")
        }
        metrics.apiPublished.increment()
        return Self.json(.accepted, .map(Self.sent(group: group, position: position)))
    }

    /// `POST /api/users/{user}/send`: a group send to `user.<sub>`, every connection of the user on every node.
    func sendToUser(_ user: String, group: String, _ message: Message) async throws(APIError) -> HTTPAnswer {
        do {
            try await layer.groupSend(message, to: group)
        } catch {
            throw Self.failure(error, doing: "sending to user \(user)")
        }
        metrics.apiPublished.increment()
        return Self.json(.accepted, .map(["user": .string(user)]))
    }

    static func sent(group: String, position: HistoryPosition?) -> OrderedDictionary<String, MessageValue> {
        var answer: OrderedDictionary<String, MessageValue> = ["group": .string(group)]
        if let position {
            answer["offset"] = .int(position.offset)
            answer["epoch"] = .string(position.epoch)
        }
        return answer
    }

    func sendToChannel(_ channel: String, _ message: Message) async throws(APIError) -> HTTPAnswer {
        do {
            try await layer.send(message, to: channel)
        } catch {
            throw Self.failure(error, doing: "sending to channel \(channel)")
        }
        metrics.apiPublished.increment()
        return Self.json(.accepted, ["channel": .string(channel)])
    }

    /// `{"groups": [...], "message": {...}}`: every name is checked before anything is sent.
    func broadcast(_ body: OrderedDictionary<String, MessageValue>) async throws(APIError) -> HTTPAnswer {
        guard let names = body["groups"]?.array, !names.isEmpty else {
            throw .badRequest("invalid_groups", #"a broadcast needs "groups", a non-empty array of group names, and "message""#)
        }
        guard names.count <= 1000 else { throw .badRequest("invalid_groups", "a broadcast goes to at most 1000 groups; split it") }
        var groups: [String] = []
        for name in names {
            guard let text = name.string else { throw .badRequest("invalid_group", "every group in \"groups\" must be a string") }
            groups.append(try Self.group(text))
        }
        guard case .map(let fields)? = body["message"] else {
            throw .badRequest("invalid_message", #"a broadcast needs "message", a JSON object with a "type""#)
        }
        let message = try Self.message(fields)
        var sent: [MessageValue] = []
        for group in OrderedSet(groups) {
            do {
                sent.append(.map(Self.sent(group: group, position: try await layer.groupSendReportingPosition(message, to: group))))
                metrics.apiPublished.increment()
            } catch {
                // Earlier groups got it: say which did.
                var failure = Self.failure(error, doing: "broadcasting to \(group) (sent to \(sent.count) groups before it)")
                failure = APIError(failure.status, failure.code, failure.message, headers: failure.headers)
                throw failure
            }
        }
        return Self.json(.accepted, ["groups": .array(sent)])
    }

    // MARK: - Listing

    func requireDirectory() throws(APIError) -> any ClusterDirectory {
        guard let directory else {
            throw APIError(.notImplemented, "not_supported", "this node's channel layer cannot list groups or members")
        }
        return directory
    }

    /// `"cluster"` when listings cover every node, `"node"` when they cover this process only (the in-memory layer).
    var scopeFields: OrderedDictionary<String, MessageValue> {
        if directory?.coversCluster == true { return ["scope": "cluster"] }
        return ["scope": "node", "note": "the in-memory layer shares nothing between processes: these are this node's own groups and members"]
    }

    func listGroups(pattern: String) async throws(APIError) -> HTTPAnswer {
        try Self.validatePattern(pattern)
        let groups = try await groupRows(pattern: pattern, rates: nil)
        var answer = scopeFields
        answer["groups"] = .array(groups)
        return Self.json(.ok, .map(answer))
    }

    static func validatePattern(_ pattern: String) throws(APIError) {
        let allowed = pattern.utf8.allSatisfy { byte in
            byte == UInt8(ascii: "*") || byte == UInt8(ascii: "?") || ChannelNames.isValidGroup(String(decoding: [byte], as: UTF8.self))
        }
        guard !pattern.isEmpty, pattern.utf8.count <= 200, allowed else {
            throw .badRequest(
                "invalid_pattern", "pattern is a glob over group names: ASCII letters, digits, '-', '_', '.', with '*' for any run and '?' for one character"
            )
        }
    }

    /// Groups matching `pattern`, without the nodes' own; with each group's messages per second when `rates` is given.
    func groupRows(pattern: String, rates: [String: Double]?) async throws(APIError) -> [MessageValue] {
        let directory = try requireDirectory()
        let groups: [DirectoryGroup]
        do {
            groups = try await directory.groups(matching: pattern)
        } catch {
            throw Self.failure(error, doing: "listing groups")
        }
        return groups.filter { group in !ChannelsNode.unlistedGroupPrefixes.contains { group.name.hasPrefix($0) } }.map { group in
            var row: OrderedDictionary<String, MessageValue> = [
                "name": .string(group.name), "members": .int(Int64(group.members)),
                "nodes": .array((group.nodes.isEmpty && !directory.coversCluster ? [nodeID] : group.nodes).map { .string($0) }),
            ]
            if let rates { row["messages_per_second"] = .double(Self.rounded(rates[group.name] ?? 0)) }
            return .map(row)
        }
    }

    func members(of group: String) async throws(APIError) -> HTTPAnswer {
        var answer: OrderedDictionary<String, MessageValue> = ["group": .string(group)]
        answer.merge(scopeFields) { $1 }
        answer["members"] = .array(try await memberRows(of: group, limit: nil))
        return Self.json(.ok, .map(answer))
    }

    func memberRows(of group: String, limit: Int?) async throws(APIError) -> [MessageValue] {
        let directory = try requireDirectory()
        let members: [DirectoryMember]
        do {
            members = try await directory.members(of: group)
        } catch {
            throw Self.failure(error, doing: "listing the members of \(group)")
        }
        return members.prefix(limit ?? .max).map { member in
            .map([
                "channel": .string(member.channel), "node": .string(member.node ?? nodeID), "joined_at": .double(member.joinedAt),
                "user": member.user.map { .string($0) } ?? .null, "info": member.info ?? .null, "present": .bool(member.present),
            ])
        }
    }

    func presence(of group: String) async throws(APIError) -> HTTPAnswer {
        var answer: OrderedDictionary<String, MessageValue> = ["group": .string(group)]
        answer.merge(scopeFields) { $1 }
        answer["members"] = .array(try await presenceRows(of: group))
        return Self.json(.ok, .map(answer))
    }

    func presenceRows(of group: String) async throws(APIError) -> [MessageValue] {
        guard let layer = layer as? any PresenceChannelLayer else { return [] }
        let members: [PresenceMember]
        do {
            members = try await layer.presence(of: group)
        } catch {
            throw Self.failure(error, doing: "reading the presence of \(group)")
        }
        return members.map { member in
            var fields = OrderedDictionary(uniqueKeysWithValues: member.fields)
            if fields["node"] == .null { fields["node"] = .string(nodeID) }
            return .map(fields)
        }
    }

    /// `?since=N` the messages after offset N, oldest first; without it the newest; `limit` of them (100, at most 1000).
    func history(of group: String, query: [String: String]) async throws(APIError) -> HTTPAnswer {
        var since: Int64?
        if let text = query["since"] {
            guard let value = Int64(text), value >= 0 else { throw .badRequest("invalid_since", "since is an offset: an integer, 0 or more") }
            since = value
        }
        var limit = 100
        if let text = query["limit"] {
            guard let value = Int(text), (1...1000).contains(value) else { throw .badRequest("invalid_limit", "limit is an integer from 1 to 1000") }
            limit = value
        }
        return Self.json(.ok, .map(try await historyFields(of: group, since: since, limit: limit)))
    }

    func historyFields(of group: String, since: Int64?, limit: Int) async throws(APIError) -> OrderedDictionary<String, MessageValue> {
        var answer: OrderedDictionary<String, MessageValue> = ["group": .string(group), "keeps_history": .bool(layer.keepsHistory(of: group))]
        let read: GroupHistory?
        do throws(ChannelLayerError) {
            read = try await (layer as? any HistoryChannelLayer)?.history(of: group, after: since, limit: limit) ?? nil
        } catch {
            throw Self.failure(error, doing: "reading the history of \(group)")
        }
        guard let read else {
            answer["messages"] = []
            answer["note"] = "this group keeps no history: groups matching the nodes' --history do, on the pub/sub and in-memory layers"
            return answer
        }
        answer["epoch"] = .string(read.top.epoch)
        answer["offset"] = .int(read.top.offset)
        answer["oldest"] = read.oldest.map { .int($0) } ?? .null
        let chosen = read.messages
        answer["messages"] = .array(chosen.map { entry in .map(["offset": .int(entry.offset), "message": .map(entry.message.fields)]) })
        return answer
    }

    // MARK: - Nodes

    /// Every node's report, by node id, asked through the layer; nodes that do not answer within half a second are left out.
    func reports() async -> [String: MessageValue] {
        let expected: Int
        if let directory, directory.coversCluster {
            expected = max(1, ((try? await directory.nodes()) ?? []).filter(\.alive).count)
        } else {
            expected = 1
        }
        let replies = (try? await control.ask(expected: expected, timeout: .milliseconds(500)) { NodeControl.report(replyTo: $0) }) ?? []
        var reports: [String: MessageValue] = [:]
        for reply in replies {
            if let node = reply["node"]?.string, let report = reply["report"] { reports[node] = report }
        }
        // This node answers for itself even when its own control listener is not up yet.
        if reports[nodeID] == nil { reports[nodeID] = ownReport() }
        return reports
    }

    func nodeRows(reports: [String: MessageValue]) async throws(APIError) -> [MessageValue] {
        var known: [DirectoryNode] = []
        if let directory, directory.coversCluster {
            do {
                known = try await directory.nodes()
            } catch {
                throw Self.failure(error, doing: "listing nodes")
            }
        }
        var rows: [MessageValue] = []
        var listed: Set<String> = []
        for node in known {
            listed.insert(node.id)
            var row: OrderedDictionary<String, MessageValue> = [
                "id": .string(node.id), "status": .string(node.alive ? "alive" : "stale"), "last_heartbeat": .double(node.lastHeartbeat),
                "started_at": node.startedAt.map { .double($0) } ?? .null, "connections": node.connections.map { .int(Int64($0)) } ?? .null,
                "groups": node.groups.map { .int(Int64($0)) } ?? .null,
            ]
            if let fields = reports[node.id]?.map {
                row.merge(fields) { _, reported in reported }
            }
            row["reported"] = .bool(reports[node.id] != nil)
            rows.append(.map(row))
        }
        // Nodes that answered before their first heartbeat reached the registry, or the in-memory node itself.
        for (id, report) in reports.sorted(by: { $0.key < $1.key }) where !listed.contains(id) {
            var row: OrderedDictionary<String, MessageValue> = ["id": .string(id), "status": "alive"]
            if let fields = report.map {
                row.merge(fields) { _, reported in reported }
            }
            row["reported"] = true
            rows.append(.map(row))
        }
        return rows
    }

    func backendInfo() async -> MessageValue {
        guard let directory, let info = try? await directory.backendInfo(), !info.isEmpty else { return .null }
        return .map(OrderedDictionary(uniqueKeysWithValues: info.sorted { $0.key < $1.key }.map { ($0.key, MessageValue.string($0.value)) }))
    }

    func listNodes() async throws(APIError) -> HTTPAnswer {
        var answer = scopeFields
        answer["nodes"] = .array(try await nodeRows(reports: await reports()))
        answer["redis"] = await backendInfo()
        return Self.json(.ok, .map(answer))
    }

    // MARK: - Disconnect

    /// `{"code": 1008, "reason": "..."}` (both optional): sent to every node through the layer; answers how many closed where.
    func disconnect(_ target: NodeControl.Target, _ body: OrderedDictionary<String, MessageValue>) async throws(APIError) -> HTTPAnswer {
        var code = Int(CloseCode.policyViolation)
        if let value = body["code"] {
            guard let number = value.int, NodeControl.isAllowedCloseCode(Int(number)) else {
                throw .badRequest("invalid_code", "code must be 1000, 1001, 1008, 1011, 1012, 1013 or from 3000 to 4999")
            }
            code = Int(number)
        }
        var reason = "disconnected by an operator"
        if let value = body["reason"] {
            guard let text = value.string, text.utf8.count <= 123 else {
                throw .badRequest("invalid_reason", "reason must be a string of at most 123 bytes (it travels in the close frame)")
            }
            reason = text
        }
        metrics.apiDisconnects.increment()
        let expected: Int
        if let directory, directory.coversCluster {
            expected = max(1, ((try? await directory.nodes()) ?? []).filter(\.alive).count)
        } else {
            expected = 1
        }
        let isChannel: Bool = if case .channel = target { true } else { false }
        let replies: [Message]
        do {
            // One channel lives on one node: the first node that closed it ends the wait.
            replies = try await control.ask(
                expected: expected, timeout: configuration.replyTimeout,
                enough: { replies in isChannel && replies.contains { ($0["closed"]?.int ?? 0) > 0 } }
            ) { NodeControl.disconnect(target, code: code, reason: reason, replyTo: $0) }
        } catch {
            throw Self.failure(error, doing: "sending the disconnect to the nodes")
        }
        var byNode: OrderedDictionary<String, MessageValue> = [:]
        var total: Int64 = 0
        for reply in replies.sorted(by: { ($0["node"]?.string ?? "") < ($1["node"]?.string ?? "") }) {
            let closed = reply["closed"]?.int ?? 0
            total += closed
            byNode[reply["node"]?.string ?? "?"] = .int(closed)
        }
        var answer: OrderedDictionary<String, MessageValue> = [:]
        switch target {
        case .channel(let channel): answer["channel"] = .string(channel)
        case .user(let user): answer["user"] = .string(user)
        }
        answer["code"] = .int(Int64(code))
        answer["reason"] = .string(reason)
        answer["disconnected"] = .int(total)
        answer["nodes"] = .map(byNode)
        answer["nodes_answered"] = .int(Int64(replies.count))
        answer["nodes_expected"] = .int(Int64(expected))
        return Self.json(.accepted, .map(answer))
    }

    static func rounded(_ value: Double) -> Double {
        (value * 100).rounded() / 100
    }
}
