import ChannelLayers
import ChannelsProtocol
import Logging

/// This node's side of ``NodeControl``: it listens on the control group and acts on its own connections,
/// and it asks every node (itself included) through the layer for the HTTP API.
///
/// Like the readiness probe, the listener is a queued channel of the layer; while the layer is down it
/// tries again every second, so a node rejoins the control group by itself after a Redis outage.
final class NodeControlService: Sendable {
    private let layer: any ChannelLayer
    private let nodeID: String
    private let connections: ConnectionRegistry
    private let pressure: PublishPressure
    private let report: @Sendable () -> MessageValue
    private let logger: Logger

    init(
        layer: any ChannelLayer, nodeID: String, connections: ConnectionRegistry, pressure: PublishPressure, logger: Logger,
        report: @escaping @Sendable () -> MessageValue
    ) {
        self.layer = layer
        self.pressure = pressure
        self.nodeID = nodeID
        self.connections = connections
        self.report = report
        self.logger = logger
    }

    /// Listens, and tells the other nodes which groups lag here, until cancelled.
    func run() async {
        await withDiscardingTaskGroup { group in
            group.addTask { await self.listen() }
            group.addTask {
                await self.pressure.run { [layer = self.layer, logger = self.logger] lag in
                    do throws(ChannelLayerError) {
                        try await layer.groupSend(lag.message, to: NodeControl.group)
                    } catch {
                        logger.debug("could not tell the other nodes which groups lag here", metadata: ["error": "\(error.message)"])
                    }
                }
            }
        }
    }

    private func listen() async {
        var channel: String?
        while !Task.isCancelled {
            do {
                if channel == nil {
                    let created = try await layer.newChannel(prefix: "control.")
                    try await layer.groupAdd(NodeControl.group, channel: created)
                    channel = created
                }
                let message = try await layer.receive(from: channel!)
                await handle(message)
            } catch {
                if Task.isCancelled { break }
                try? await Task.sleep(for: .seconds(1))
            }
        }
        if let channel { await layer.deleteChannel(channel) }
    }

    private func handle(_ message: Message) async {
        guard message.type == NodeControl.type else { return }
        let replyTo = message["reply_to"]?.string
        switch message["action"]?.string {
        case "disconnect":
            let target: NodeControl.Target
            if let channel = message["channel"]?.string {
                target = .channel(channel)
            } else if let user = message["user"]?.string {
                target = .user(user)
            } else {
                return
            }
            let requested = Int(message["code"]?.int ?? Int64(CloseCode.policyViolation))
            let code = UInt16(NodeControl.isAllowedCloseCode(requested) ? requested : Int(CloseCode.policyViolation))
            let reason = String((message["reason"]?.string ?? "disconnected by an operator").utf8.prefix(123)) ?? "disconnected by an operator"
            let matching = connections.matching(target)
            for connection in matching { connection.requestClose(code: code, reason: reason) }
            if !matching.isEmpty {
                logger.info("closed connections on an operator's request", metadata: ["target": "\(target)", "closed": "\(matching.count)", "code": "\(code)"])
            }
            if let replyTo { await answer(replyTo, [("closed", .int(Int64(matching.count)))]) }
        case "report":
            if let replyTo { await answer(replyTo, [("report", report())]) }
        case "lag":
            if let lag = NodeControl.Lag(message) { pressure.heard(lag) }
        default:
            break
        }
    }

    private func answer(_ channel: String, _ fields: [(String, MessageValue)]) async {
        do {
            try await layer.send(NodeControl.reply(node: nodeID, fields: fields), to: channel)
        } catch {
            logger.debug("could not answer a control message", metadata: ["error": "\(error.message)"])
        }
    }

    /// Group-sends the control message `make` builds for a fresh reply channel, and gathers the nodes'
    /// answers until `expected` came, `enough` says so, or `timeout` passed.
    func ask(
        expected: Int, timeout: Duration, enough: @escaping @Sendable ([Message]) -> Bool = { _ in false }, _ make: (String) -> Message
    ) async throws(ChannelLayerError) -> [Message] {
        let channel = try await layer.newChannel(prefix: "api.")
        do {
            try await layer.groupSend(make(channel), to: NodeControl.group)
        } catch {
            await layer.deleteChannel(channel)
            throw error
        }
        let replies = await NodeControl.gatherReplies(from: layer, on: channel, expected: expected, timeout: timeout, enough: enough)
        await layer.deleteChannel(channel)
        return replies
    }
}
