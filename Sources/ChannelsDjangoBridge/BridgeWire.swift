import ChannelsNode
import ChannelsProtocol
import OrderedCollections

/// The names and shapes of docs/django-bridge.md, the contract between nodes and `swift-channels-worker`.
enum BridgeWire {
    static let version: Int64 = 1
    /// Nodes are members; workers group-send their heartbeats here.
    static let workersGroup = "swift_channels.workers"
    /// Workers are members; nodes group-send their heartbeats here.
    static let nodesGroup = "swift_channels.nodes"
    static let workerHeartbeat = "swift_channels.worker"
    static let nodeHeartbeat = "swift_channels.node"
    static let events = "swift_channels.events"
    static let actions = "swift_channels.actions"
    /// A connection's own wake-up: its mailbox applies the actions that wait (never leaves the node).
    static let wake = "swift_channels.wake"
    /// How long workers believe a node alive without its heartbeat (they end its connections after).
    static let nodeLease = 10.0

    /// An event for a worker: `[connection, seq, kind, body]`.
    enum Event {
        case connect(scope: MessageValue)
        case receiveText(String)
        case receiveBytes([UInt8])
        case layer(Message)
        case disconnect(code: UInt16)
        /// A group call carried out (unsequenced).
        case done(action: Int64, error: String?)

        var kind: String {
            switch self {
            case .connect: "connect"
            case .receiveText, .receiveBytes: "receive"
            case .layer: "layer"
            case .disconnect: "disconnect"
            case .done: "done"
            }
        }

        var body: MessageValue {
            switch self {
            case .connect(let scope): ["scope": scope]
            case .receiveText(let text): ["text": .string(text)]
            case .receiveBytes(let bytes): ["bytes": .bytes(bytes)]
            case .layer(let message): .map(message.fields)
            case .disconnect(let code): ["code": .int(Int64(code))]
            case .done(let action, let error): ["action": .int(action), "error": error.map(MessageValue.string) ?? .null]
            }
        }

        func item(connection: String, seq: Int64) -> MessageValue {
            .array([.string(connection), .int(seq), .string(kind), body])
        }
    }

    /// An action from a worker, as applied to its connection.
    enum Action: Sendable {
        case accept(subprotocol: String?, headers: [(String, String)], forward: [String: [String]])
        case sendText(String)
        case sendBytes([UInt8])
        case close(code: UInt16, reason: String)
        case groupAdd(String, presenceUser: String??)
        case groupDiscard(String)
        /// A `group_send` into a history group: the node's engine publishes it, numbered.
        case groupSend(String, Message)
        case end(error: String?)
        case reject(reason: String)

        /// Reads `kind` and `body`; `nil` for a shape this node does not know.
        init?(kind: String, body: MessageValue) {
            switch kind {
            case "accept":
                let headers: [(String, String)] = (body["headers"]?.array ?? []).compactMap { pair in
                    guard let pair = pair.array, pair.count == 2, let name = pair[0].textOrBytes, let value = pair[1].textOrBytes else { return nil }
                    return (name, value)
                }
                var forward: [String: [String]] = [:]
                for (handler, fields) in body["forward"]?.map ?? [:] {
                    let names = fields.array?.compactMap(\.string) ?? []
                    if !names.isEmpty { forward[handler] = names }
                }
                self = .accept(subprotocol: body["subprotocol"]?.string, headers: headers, forward: forward)
            case "send":
                if let text = body["text"]?.string {
                    self = .sendText(text)
                } else if let bytes = body["bytes"]?.bytes {
                    self = .sendBytes(bytes)
                } else {
                    return nil
                }
            case "close":
                let code = body["code"]?.int ?? Int64(CloseCode.normal)
                self = .close(code: Self.sendableCode(code), reason: body["reason"]?.string ?? "")
            case "group_add", "group_discard":
                guard let group = body["group"]?.string else { return nil }
                if kind == "group_add" {
                    // Presence only when the worker says so; its user may be nil (anonymous).
                    let presence: String?? = body["presence"].map { $0["user"]?.string }
                    self = .groupAdd(group, presenceUser: presence)
                } else {
                    self = .groupDiscard(group)
                }
            case "group_send":
                guard let group = body["group"]?.string, let fields = body["message"]?.map else { return nil }
                self = .groupSend(group, Message(fields))
            case "end":
                self = .end(error: body["error"]?.string)
            case "reject":
                self = .reject(reason: body["reason"]?.string ?? "worker unavailable")
            default:
                return nil
            }
        }

        /// RFC 6455 7.4: codes a server may send; anything else (1005, 1006, 1015, reserved ranges) becomes 1000.
        static func sendableCode(_ code: Int64) -> UInt16 {
            switch code {
            case 1000...1003, 1007...1014, 3000...4999: UInt16(code)
            default: CloseCode.normal
            }
        }
    }
}

extension MessageValue {
    /// A string, or bytes read as UTF-8 (ASGI headers are bytes).
    var textOrBytes: String? {
        switch self {
        case .string(let text): text
        case .bytes(let bytes): String(decoding: bytes, as: UTF8.self)
        default: nil
        }
    }
}
