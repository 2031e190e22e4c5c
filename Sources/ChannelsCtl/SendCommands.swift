import ArgumentParser
import ChannelLayers
import ChannelLayersRedis
import ChannelsProtocol
import HiredisClient
import OrderedCollections

/// Builds a layer message from JSON text (an object with a string `type`).
func layerMessage(fromJSON text: String) throws(CtlFailure) -> Message {
    let value: MessageValue
    do throws(ProtocolError) {
        value = try JSON.parse(text)
    } catch {
        throw CtlFailure("the message is not valid JSON: \(error.message)")
    }
    guard case .map(let fields) = value else { throw CtlFailure(#"the message must be a JSON object, like {"type": "chat.message", "message": "hi"}"#) }
    guard fields["type"]?.string != nil else { throw CtlFailure(#"the message needs a string "type", like {"type": "chat.message", "message": "hi"}"#) }
    return Message(fields)
}

/// A layer for one send: no registry, nothing running but the command connection.
func sendingLayer(_ options: RedisOptions, history: [String] = []) throws(CtlFailure) -> any ChannelLayer {
    var settings = RedisLayerSettings(kind: try options.resolvedLayer(), urls: options.resolvedURLs)
    settings.clusterSeeds = options.resolvedClusterSeeds
    settings.prefix = options.resolvedPrefix
    settings.nodeID = "channels-ctl"
    settings.registry = false
    settings.encryptionKeys = try options.resolvedEncryptionKeys()
    // As the nodes: a pub/sub group with history is numbered by the history script; encrypted messages keep none.
    if settings.kind == .pubsub, settings.encryptionKeys.isEmpty {
        settings.history = HistoryConfiguration(patterns: history == ["none"] ? [] : history)
    }
    settings.adjustHost = { $0.connectTimeout = .seconds(3) }
    do throws(ChannelLayerError) {
        return try settings.makeLayer().layer
    } catch {
        throw CtlFailure(error.message)
    }
}

/// Parses `json`, sends it with `deliver` through a one-off layer, and reports "sent to <kind> <name>".
func send(
    _ json: String, through redis: RedisOptions, to kind: String, _ name: String, history: [String] = [],
    _ deliver: (any ChannelLayer, Message) async throws(ChannelLayerError) -> Void
) async throws(CtlFailure) {
    let message = try layerMessage(fromJSON: json)
    let layer = try sendingLayer(redis, history: history)
    do throws(ChannelLayerError) {
        try await deliver(layer, message)
    } catch {
        throw CtlFailure(error.message)
    }
    if redis.json { Output.json(Output.object(["sent": true, kind: .string(name)])) } else { print("sent to \(kind) \(name)") }
}

/// `channels-ctl send <group> <json>`
struct SendCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "send", abstract: "groupSend a JSON message to a group (Swift nodes and Django consumers receive it)."
    )

    @OptionGroup var redis: RedisOptions
    @Argument(help: "The group.") var group: String
    @Argument(help: #"The message, e.g. '{"type": "chat.message", "message": "hi"}'."#) var json: String
    @Option(name: .customLong("history"), help: "Groups that keep a history, as the nodes' --history (repeatable; none). [default: chat_*]")
    var history: [String] = ["chat_*"]

    func run() async throws {
        try await send(json, through: redis, to: "group", group, history: history) { layer, message throws(ChannelLayerError) in
            try await layer.groupSend(message, to: group)
        }
    }
}

/// `channels-ctl send-channel <name> <json>`
struct SendChannelCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "send-channel", abstract: "Send a JSON message to one channel.")

    @OptionGroup var redis: RedisOptions
    @Argument(help: "The channel: asgispecific.0f3c... on the pubsub layer, specific.0f3c...!9ab1... on the core layer.") var channel: String
    @Argument(help: "The message.") var json: String

    func run() async throws {
        try await send(json, through: redis, to: "channel", channel) { layer, message throws(ChannelLayerError) in
            try await layer.send(message, to: channel)
        }
    }
}

/// `channels-ctl flush --yes`
struct FlushCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "flush",
        abstract: "Delete every key under the prefix (the registry, and channels_redis' core-layer keys).",
        discussion: "Live nodes write their registry entries again at their next heartbeat (within 10 s)."
    )

    @OptionGroup var redis: RedisOptions
    @Flag(help: "Really delete.") var yes = false

    func run() async throws {
        guard yes else { throw CtlFailure("flush deletes every key starting with '\(redis.resolvedPrefix)'; run again with --yes") }
        let (reader, connection) = try await redis.reader()
        let prefix = redis.resolvedPrefix
        let deleted = try await RedisCall.run { () throws(RedisError) -> Int in
            let keys = try await reader.scan("\(prefix)*")
            var deleted = 0
            for start in stride(from: 0, to: keys.count, by: 500) {
                let batch = keys[start..<min(start + 500, keys.count)]
                deleted += Int(try await connection.send(RedisCommand("UNLINK", arguments: batch.map { .string($0) })).integer ?? 0)
            }
            return deleted
        }
        await connection.close()
        if redis.json { Output.json(Output.object(["deleted": .int(Int64(deleted))])) } else { print("deleted \(deleted) keys under '\(prefix)'") }
    }
}
