import ChannelLayers
import ChannelsProtocol
import HiredisClient
import Logging
import NIOCore
import NIOPosix
import Synchronization

extension RedisPubSubChannelLayer {
    public func keepsHistory(_ group: String) -> Bool {
        configuration.history.keepsHistory(group)
    }

    public func history(of group: String, after offset: Int64?, limit: Int) async throws(ChannelLayerError) -> GroupHistory? {
        try LayerValidation.group(group)
        guard keepsHistory(group) else { return nil }
        let client = shard(for: groupChannel(group)).client
        let meta = HistoryScript.metaKey(prefix: configuration.prefix, group: group)
        let stream = HistoryScript.streamKey(prefix: configuration.prefix, group: group)
        let count = max(0, limit)
        // Every read is bounded by COUNT: a client asking for offset 0 of a long history costs one page.
        let read: RedisCommand =
            switch offset {
            case nil: RedisCommand("XREVRANGE", .string(stream), "+", "-", "COUNT", .integer(count))
            case let offset? where offset < Int64.max: RedisCommand("XRANGE", .string(stream), .string("(\(max(offset, 0))-0"), "+", "COUNT", .integer(count))
            default: RedisCommand("XLEN", .string(stream))
            }
        let replies: [RedisReply]
        do {
            replies = try await client.pipeline([
                // A group nothing was sent to yet gets its epoch now, so that a client that recovers before
                // the first message already holds the epoch that message will carry.
                RedisCommand("HSETNX", .string(meta), "epoch", .string(String(ChannelName.random(prefix: "").prefix(8)))),
                RedisCommand("EXPIRE", .string(meta), .integer(max(HistoryScript.metaTTLSeconds, Int(configuration.history.ttl.components.seconds))), "NX"),
                RedisCommand("HMGET", .string(meta), "offset", "epoch"),
                count > 0 ? read : RedisCommand("XLEN", .string(stream)),
                RedisCommand("XRANGE", .string(stream), "-", "+", "COUNT", 1),
            ])
        } catch {
            throw ChannelLayerError(error, doing: "reading the history of \(group)")
        }
        let fields = replies[2].array ?? []
        let top = fields.first?.string.flatMap { Int64($0) } ?? 0
        let epoch = fields.count > 1 ? fields[1].string ?? "" : ""
        var messages: [(offset: Int64, message: Message)] = []
        var bytes = 0
        for entry in replies[3].array ?? [] {
            // Entries above the top belong to a stream an earlier epoch left behind: never replayed.
            guard let (offset, message, size) = Self.historyEntry(entry), offset <= top else { continue }
            messages.append((offset, message))
            bytes += size
        }
        if offset == nil { messages.reverse() }
        let oldest = (replies[4].array?.first).flatMap { Self.historyEntry($0)?.offset }.flatMap { $0 <= top ? $0 : nil }
        state.withLock { $0.historyBytesRead += bytes }
        return GroupHistory(top: HistoryPosition(offset: top, epoch: epoch), messages: messages, oldest: oldest, bytes: bytes)
    }

    /// An XRANGE entry `[id, [field, value]]` as its offset, the message without the history keys, and its size.
    static func historyEntry(_ entry: RedisReply) -> (offset: Int64, message: Message, bytes: Int)? {
        guard let parts = entry.array, parts.count == 2, let id = parts[0].string,
            let offset = Int64(id.split(separator: "-").first ?? ""), let values = parts[1].array, values.count >= 2,
            let payload = values[1].bytes, let decoded = try? MessagePack.decodeMessage(payload)
        else { return nil }
        return (offset, stripHistoryKeys(decoded).message, payload.count)
    }

    /// The message without `__offset` and `__epoch`, and the position they claim (not yet trusted).
    static func stripHistoryKeys(_ message: Message) -> (message: Message, position: HistoryPosition?) {
        let offset = message[HistoryScript.offsetKey]
        let epoch = message[HistoryScript.epochKey]
        guard offset != nil || epoch != nil else { return (message, nil) }
        var stripped = message
        stripped[HistoryScript.offsetKey] = nil
        stripped[HistoryScript.epochKey] = nil
        guard let offset = offset?.int, offset > 0, let epoch = epoch?.string else { return (stripped, nil) }
        return (stripped, HistoryPosition(offset: offset, epoch: epoch))
    }

    /// The history publish script's keys and arguments for `payload` (a message's msgpack) in `group`.
    func historyPublishArguments(group: String, payload: [UInt8]) -> [RedisArgument] {
        let history = configuration.history
        let seconds = Int(history.ttl.components.seconds)
        return [
            2,
            .string(HistoryScript.metaKey(prefix: configuration.prefix, group: group)),
            .string(HistoryScript.streamKey(prefix: configuration.prefix, group: group)),
            .string(groupChannel(group)), .bytes(payload), .integer(history.size),
            .integer(max(1, seconds)), .integer(max(HistoryScript.metaTTLSeconds, seconds)),
            .string(ChannelName.epochCandidate()), .string(publishCommand), .integer(history.maxBytes),
        ]
    }

    /// One script call: the message goes into the group's history with the next offset, then is published
    /// with its offset and epoch.
    func publishWithHistory(_ message: Message, group: String) async throws(ChannelLayerError) -> HistoryPosition? {
        let channel = groupChannel(group)
        let payload = MessagePack.encode(message)
        let reply: RedisReply
        do {
            reply = try await HistoryScript.publishScript.run(historyPublishArguments(group: group, payload: payload), on: shard(for: channel).client)
        } catch {
            throw ChannelLayerError(error, doing: "publishing to \(channel) with history")
        }
        // What the stream holds for it: the payload, the two history keys and their values.
        state.withLock { $0.historyBytesWritten += payload.count + 30 }
        // The script answers {offset, epoch}.
        guard let parts = reply.array, parts.count == 2, let offset = parts[0].integer, let epoch = parts[1].string else { return nil }
        return HistoryPosition(offset: offset, epoch: epoch)
    }

    /// Checks a claimed position against the group's history (off the subscriber's event loop), then delivers
    /// it and the group's messages that waited behind it. They are handed to the inboxes under the check's
    /// lock, as the subscriber's admitted messages are: a message that arrives meanwhile and follows them
    /// cannot overtake them.
    func verify(_ position: HistoryPosition, payload: [UInt8], group: String) {
        Task {
            let genuine = await isAssigned(position, payload: payload, group: group)
            let release = positionCheck.withLock { check in
                let release = check.verified(group: group, genuine: genuine)
                let (pushed, queued) = local.withMembership { ($0.pushed.members(of: group), $0.queuedMembers[group]) }
                for (message, position) in release.deliveries {
                    deliver(message, position: position, group: group, pushed: pushed, queued: queued)
                }
                return release
            }
            if release.untrusted > 0 {
                state.withLock { $0.untrustedOffsets += release.untrusted }
                warnings.warn(
                    "delivered a message without the history offset it carried: the group's history did not assign it (a publisher other than the history script set __offset/__epoch)",
                    metadata: ["group": "\(group)"]
                )
            }
            if let next = release.verify { verify(next.position, payload: next.payload, group: group) }
        }
    }

    /// Whether the history script published `payload` at `position`: the group's epoch is the same and its
    /// stream holds those bytes at that offset.
    func isAssigned(_ position: HistoryPosition, payload: [UInt8], group: String) async -> Bool {
        let meta = HistoryScript.metaKey(prefix: configuration.prefix, group: group)
        let stream = HistoryScript.streamKey(prefix: configuration.prefix, group: group)
        let id = "\(position.offset)-0"
        do {
            let replies = try await shard(for: groupChannel(group)).client.pipeline([
                RedisCommand("HGET", .string(meta), "epoch"),
                RedisCommand("XRANGE", .string(stream), .string(id), .string(id)),
            ])
            guard replies[0].string == position.epoch, let entry = replies[1].array?.first?.array, entry.count == 2,
                let fields = entry[1].array, fields.count >= 2
            else { return false }
            return fields[1].bytes == payload
        } catch {
            warnings.warn("could not check a history offset against Redis; the message goes without it", metadata: ["error": "\(error.message)"])
            return false
        }
    }
}
