import ChannelsProtocol

/// What a consumer knows about its connection, like Django Channels' `scope`.
public struct Scope: Sendable {
    /// The request path, e.g. `/ws/chat/lobby/`.
    public var path: String
    /// Values of the route's `<name>` segments, e.g. `["room": "lobby"]` (Django's `url_route.kwargs`).
    public var parameters: [String: String] {
        get { Dictionary(packedParameters.all, uniquingKeysWith: { $1 }) }
        set { packedParameters = PackedPairs(newValue) }
    }
    private var packedParameters: PackedPairs
    /// The query string's parameters (the last value of a repeated name wins).
    public var query: [String: String]
    /// The query string as the client sent it, without the `?` (ASGI's `query_string`).
    public var queryString: String
    /// The request headers, names lowercased, in order.
    public var headers: [(name: String, value: String)] {
        get { packedHeaders.all }
        set { packedHeaders = PackedPairs(newValue) }
    }
    private var packedHeaders: PackedPairs
    /// The client's address (`ip:port`) as the node saw it.
    public var clientAddress: String?
    /// The authenticated user's claims, once an authentication middleware set them.
    public var user: [String: MessageValue]?
    /// How the client is connected: a WebSocket, or an event stream (`Accept: text/event-stream`), which
    /// only receives. A consumer that needs the client's messages may refuse event streams in `connect()`.
    public var transport: Transport

    /// How a client is connected to its consumer.
    public enum Transport: String, Sendable {
        /// A WebSocket: frames both ways.
        case webSocket = "websocket"
        /// Server-sent events: the client only receives; each text frame the consumer sends is one event.
        case eventStream = "eventstream"
    }

    public init(
        path: String,
        parameters: [String: String] = [:],
        query: [String: String] = [:],
        headers: [(name: String, value: String)] = [],
        clientAddress: String? = nil,
        user: [String: MessageValue]? = nil,
        queryString: String = "",
        transport: Transport = .webSocket
    ) {
        self.transport = transport
        self.path = path
        self.packedParameters = PackedPairs(parameters)
        self.query = query
        self.queryString = queryString
        self.packedHeaders = PackedPairs(headers)
        self.clientAddress = clientAddress
        self.user = user
    }

    /// The user's id: the `sub` claim, an integer one as its decimal string (`"sub": 42` is user `"42"` in
    /// presence, logs and user disconnects); `nil` without a string or integer `sub`.
    public var userID: String? {
        switch user?["sub"] {
        case .string(let id)?: id
        case .int(let id)?: String(id)
        default: nil
        }
    }

    /// The first header with this name (case-insensitive).
    public func header(_ name: String) -> String? {
        packedHeaders.first(named: name.lowercased())
    }

    /// Parses `a=1&b=two%20words` (percent-decoding, `+` as space).
    public static func parseQuery(_ query: Substring) -> [String: String] {
        var result: [String: String] = [:]
        for pair in query.split(separator: "&") where !pair.isEmpty {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = percentDecode(parts[0])
            let value = parts.count > 1 ? percentDecode(parts[1]) : ""
            result[name] = value
        }
        return result
    }

    static func percentDecode(_ text: Substring) -> String {
        var bytes: [UInt8] = []
        var iterator = text.utf8.makeIterator()
        while let byte = iterator.next() {
            if byte == UInt8(ascii: "+") {
                bytes.append(UInt8(ascii: " "))
            } else if byte == UInt8(ascii: "%"), let high = iterator.next(), let low = iterator.next(),
                let value = UInt8(String(decoding: [high, low], as: UTF8.self), radix: 16)
            {
                bytes.append(value)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
