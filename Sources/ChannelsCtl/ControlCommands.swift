import ArgumentParser
import ChannelLayers
import ChannelLayersRedis
import ChannelsProtocol
import HiredisClient
import OrderedCollections

/// `channels-ctl history <group> [--since N] [--limit N]`
struct HistoryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "history",
        abstract: "Show a history group's recent messages: offset and message (pub/sub layer).",
        discussion: "Without --since, the newest --limit messages; with it, the messages after that offset, oldest first."
    )

    @OptionGroup var redis: RedisOptions
    @Argument(help: "The group.") var group: String
    @Option(help: "Show the messages after this offset.") var since: Int64?
    @Option(help: "How many messages (1-1000).") var limit = 20
    @Option(name: .customLong("history"), help: "Groups that keep a history, as the nodes' --history (repeatable). [default: chat_*]")
    var history: [String] = ["chat_*"]

    func run() async throws {
        guard ChannelNames.isValidGroup(group) else { throw CtlFailure(ChannelNames.errorText("Group")) }
        guard (1...1000).contains(limit), (since ?? 0) >= 0 else { throw CtlFailure("--limit must be from 1 to 1000 and --since 0 or more") }
        guard try redis.resolvedLayer() == .pubsub else {
            throw CtlFailure("the core layer keeps no history: history needs the pub/sub layer (--layer pubsub)")
        }
        guard let layer = try sendingLayer(redis, history: history) as? any HistoryChannelLayer, layer.keepsHistory(group) else {
            throw CtlFailure("\(group) keeps no history: it does not match \(history.joined(separator: ", ")) (pass the nodes' patterns with --history)")
        }
        let read: GroupHistory?
        do {
            read = try await layer.history(of: group, after: since, limit: limit)
        } catch {
            throw CtlFailure(error.message)
        }
        guard let read else { throw CtlFailure("\(group) keeps no history") }
        let messages = read.messages
        if redis.json {
            Output.json(Output.object([
                "group": .string(group), "epoch": .string(read.top.epoch), "offset": .int(read.top.offset),
                "messages": .array(messages.map { Output.object(["offset": .int($0.offset), "message": .map($0.message.fields)]) }),
            ]))
        } else {
            print("group \(group): epoch \(read.top.epoch), newest offset \(read.top.offset)")
            Output.table(["OFFSET", "MESSAGE"], messages.map { [String($0.offset), (try? JSON.serialize(.map($0.message.fields))) ?? "(binary)"] })
        }
    }
}

/// `channels-ctl disconnect --channel C | --user U [--code N] [--reason R]`
struct DisconnectCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "disconnect",
        abstract: "Close a channel's connection, or every connection of a user (the token's sub), on every node.",
        discussion: """
            Sent through the channel layer to the nodes' control group (channels.control); each node closes its \
            matching connections and says how many. 1008, the default, keeps /channels.js from reconnecting; \
            1012 lets it reconnect.
            """
    )

    @OptionGroup var redis: RedisOptions
    @Option(help: "The channel to close.") var channel: String?
    @Option(help: "The user (the token's sub) whose connections to close.") var user: String?
    @Option(help: "Close code: 1000, 1001, 1008, 1011, 1012, 1013 or 3000-4999.") var code = 1008
    @Option(help: "Close reason (at most 123 bytes).") var reason = "disconnected by an operator"
    @Option(help: "Seconds to wait for the nodes' answers.") var wait = 2.0

    func run() async throws {
        let target: NodeControl.Target
        switch (channel, user) {
        case (let channel?, nil):
            guard ChannelNames.isValidChannel(channel) else { throw CtlFailure(ChannelNames.errorText("Channel")) }
            target = .channel(channel)
        case (nil, let user?):
            guard !user.isEmpty, user.utf8.count <= 256 else { throw CtlFailure("--user is the token's sub: 1 to 256 bytes") }
            target = .user(user)
        default:
            throw CtlFailure("give either --channel CHANNEL or --user USER")
        }
        guard NodeControl.isAllowedCloseCode(code) else { throw CtlFailure("--code must be 1000, 1001, 1008, 1011, 1012, 1013 or from 3000 to 4999") }
        guard reason.utf8.count <= 123 else { throw CtlFailure("--reason must be at most 123 bytes (it travels in the close frame)") }
        let (reader, connection) = try await redis.reader()
        let expected = max(1, try await RedisCall.run { () throws(RedisError) in try await reader.nodes() }.filter(\.alive).count)
        await connection.close()

        let runnable = try runningLayer(redis)
        let runner = Task { try? await runnable.run() }
        defer { runner.cancel() }
        let layer = runnable.layer
        let replies: [Message]
        do {
            let replyTo = try await layer.newChannel(prefix: "ctl.")
            try await layer.groupSend(NodeControl.disconnect(target, code: code, reason: reason, replyTo: replyTo), to: NodeControl.group)
            replies = await gather(from: layer, on: replyTo, expected: expected)
        } catch {
            throw CtlFailure(error.message)
        }
        let total = replies.compactMap { $0["closed"]?.int }.reduce(0, +)
        if redis.json {
            var byNode = OrderedDictionary<String, MessageValue>()
            for reply in replies { byNode[reply["node"]?.string ?? "?"] = reply["closed"] ?? .int(0) }
            Output.json(Output.object([
                "disconnected": .int(total), "nodes": .map(byNode), "nodes_answered": .int(Int64(replies.count)), "nodes_expected": .int(Int64(expected)),
            ]))
        } else {
            print("closed \(total) connection(s); \(replies.count) of \(expected) node(s) answered")
            Output.table(["NODE", "CLOSED"], replies.map { [$0["node"]?.string ?? "?", String($0["closed"]?.int ?? 0)] })
        }
    }

    private func gather(from layer: any ChannelLayer, on channel: String, expected: Int) async -> [Message] {
        await NodeControl.gatherReplies(from: layer, on: channel, expected: expected, timeout: .milliseconds(Int64(wait * 1000)))
    }
}

/// A layer that receives (its subscriptions or queue loop run while `run` does): for commands that wait for answers.
func runningLayer(_ options: RedisOptions) throws(CtlFailure) -> RunnableRedisLayer {
    var settings = RedisLayerSettings(kind: try options.resolvedLayer(), urls: options.resolvedURLs)
    settings.prefix = options.resolvedPrefix
    settings.nodeID = "channels-ctl"
    settings.registry = false
    settings.encryptionKeys = try options.resolvedEncryptionKeys()
    settings.adjustHost = { $0.connectTimeout = .seconds(3) }
    do throws(ChannelLayerError) {
        return try settings.makeLayer()
    } catch {
        throw CtlFailure(error.message)
    }
}
