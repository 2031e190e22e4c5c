import ChannelsProtocol

/// The messages operators send to every node through the channel layer, and the nodes' answers.
///
/// Nodes are stateless and share nothing but the layer, so an action on "every connection of user U" is a
/// group message: every node joins ``group`` (kept out of listings), acts on its own connections and
/// answers on the `reply_to` channel when one is given. The HTTP API and `channels-ctl disconnect` speak it,
/// and so can any process on the layer (Django included): a message of type ``type`` with an `action`.
///
/// - `{"type": "channels.control", "action": "disconnect", "channel": C | "user": U, "code": 4000, "reason": R, "reply_to": X}`:
///   each node closes its connections whose channel is C, or whose token's `sub` is U, with the code and
///   reason, and answers `{"type": "channels.control.reply", "node": N, "closed": K}`.
/// - `{"type": "channels.control", "action": "report", "reply_to": X}`: each node answers
///   `{"type": "channels.control.reply", "node": N, "report": {...}}` (connections, rates, version).
/// - `{"type": "channels.control", "action": "lag", "node": N, "lagging": [G, ...], "caught_up": [G, ...], "ttl_ms": T}`:
///   node N has members of the `lagging` groups that fell behind reading; publishers on every node wait
///   before sending into them until N says they `caught_up`, or for T ms unless N repeats it.
public enum NodeControl {
    /// The group every node joins to hear control messages.
    public static let group = "channels.control"
    /// The `type` of control messages.
    public static let type = "channels.control"
    /// The `type` of the nodes' answers.
    public static let replyType = "channels.control.reply"

    /// Close codes an operator may use: the normal and server codes a client understands, and the
    /// application range 3000-4999.
    public static func isAllowedCloseCode(_ code: Int) -> Bool {
        [1000, 1001, 1008, 1011, 1012, 1013].contains(code) || (3000...4999).contains(code)
    }

    /// Whom a disconnect is for.
    public enum Target: Sendable, Hashable {
        /// One connection, by its channel name.
        case channel(String)
        /// Every connection whose token's `sub` is this user.
        case user(String)
    }

    /// A disconnect request.
    public static func disconnect(_ target: Target, code: Int, reason: String, replyTo: String?) -> Message {
        var message: Message = ["type": .string(type), "action": "disconnect"]
        switch target {
        case .channel(let channel): message["channel"] = .string(channel)
        case .user(let user): message["user"] = .string(user)
        }
        message["code"] = .int(Int64(code))
        message["reason"] = .string(reason)
        if let replyTo { message["reply_to"] = .string(replyTo) }
        return message
    }

    /// A request for every node's report.
    public static func report(replyTo: String) -> Message {
        ["type": .string(type), "action": "report", "reply_to": .string(replyTo)]
    }

    /// A node's answer.
    public static func reply(node: String, fields: [(String, MessageValue)]) -> Message {
        var message: Message = ["type": .string(replyType), "node": .string(node)]
        for (key, value) in fields { message[key] = value }
        return message
    }
}

extension NodeControl {
    /// A node's announcement that groups lag there (members fell behind reading) or caught up.
    public struct Lag: Sendable, Hashable {
        public var node: String
        public var lagging: [String]
        public var caughtUp: [String]
        /// How long the other nodes hold `lagging` unless the node repeats it.
        public var timeToLiveMilliseconds: Int

        public init(node: String, lagging: [String], caughtUp: [String], timeToLiveMilliseconds: Int) {
            self.node = node
            self.lagging = lagging
            self.caughtUp = caughtUp
            self.timeToLiveMilliseconds = timeToLiveMilliseconds
        }

        /// The control message.
        public var message: Message {
            [
                "type": .string(NodeControl.type), "action": "lag", "node": .string(node),
                "lagging": .array(lagging.map { .string($0) }), "caught_up": .array(caughtUp.map { .string($0) }),
                "ttl_ms": .int(Int64(timeToLiveMilliseconds)),
            ]
        }

        /// Reads a control message of action `lag`; nil when it is not one or lacks a field. The time to live
        /// is kept within 1 ms to 10 s, so that a wrong one can neither be ignored nor hold publishers for long.
        public init?(_ message: Message) {
            guard message.type == NodeControl.type, message["action"]?.string == "lag", let node = message["node"]?.string,
                let ttl = message["ttl_ms"]?.int
            else { return nil }
            self.node = node
            self.lagging = message["lagging"]?.array?.compactMap(\.string) ?? []
            self.caughtUp = message["caught_up"]?.array?.compactMap(\.string) ?? []
            self.timeToLiveMilliseconds = Int(min(max(ttl, 1), 10_000))
        }
    }

    /// The nodes' answers on `channel` (messages of type ``replyType``), until `expected` came, `enough`
    /// says so, or `timeout` passed: what came by then.
    public static func gatherReplies(
        from layer: any ChannelLayer, on channel: String, expected: Int, timeout: Duration,
        enough: @escaping @Sendable ([Message]) -> Bool = { _ in false }
    ) async -> [Message] {
        await withTaskGroup(of: [Message]?.self) { tasks in
            tasks.addTask {
                var gathered: [Message] = []
                while gathered.count < expected, !enough(gathered) {
                    guard let message = try? await layer.receive(from: channel) else { break }
                    if message.type == replyType { gathered.append(message) }
                }
                return gathered
            }
            tasks.addTask {
                try? await Task.sleep(for: timeout)
                return nil
            }
            // The first to finish decides; a timeout keeps what came so far (the gatherer ends when cancelled).
            var result: [Message] = []
            if let first = await tasks.next() {
                if let gathered = first {
                    result = gathered
                } else {
                    tasks.cancelAll()
                    result = (await tasks.next() ?? nil) ?? []
                }
            }
            tasks.cancelAll()
            return result
        }
    }
}

