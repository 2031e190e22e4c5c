import ChannelLayers
import ChannelsProtocol
import CoreMetrics
import NIOCore
import NIOHTTP1
import OrderedCollections

/// The node's HTTP API: publish into groups and channels from any backend, list groups, members, presence,
/// history and nodes, and disconnect channels or users on every node, as JSON over HTTP.
///
/// Every node serves it (nodes are stateless; any node reaches all of them through the layer), off unless
/// keys are configured. `Sources/ChannelsNode/API/openapi.json`, served at `/api/openapi.json`, describes
/// it and is checked against these routes by the tests. Requests carry `Authorization: Bearer <key>`;
/// each key has a token bucket. A request is decided from its head (``examine(_:)``) before any of its body
/// is read: only an authenticated request to a route that takes a body has one read, within the node's
/// budget of bodies in flight.
final class ServerAPI: Sendable {
    /// One route: a method and a path template whose `{name}` segments are parameters.
    struct Operation: Sendable, Hashable {
        let method: String
        let path: String
    }

    /// Every route the API serves, as the OpenAPI document lists them.
    static let operations: [Operation] = [
        Operation(method: "POST", path: "/api/groups/{group}/send"),
        Operation(method: "POST", path: "/api/channels/{channel}/send"),
        Operation(method: "POST", path: "/api/broadcast"),
        Operation(method: "GET", path: "/api/groups"),
        Operation(method: "GET", path: "/api/groups/{group}/members"),
        Operation(method: "GET", path: "/api/groups/{group}/presence"),
        Operation(method: "GET", path: "/api/groups/{group}/history"),
        Operation(method: "GET", path: "/api/nodes"),
        Operation(method: "POST", path: "/api/channels/{channel}/disconnect"),
        Operation(method: "POST", path: "/api/users/{user}/disconnect"),
        Operation(method: "POST", path: "/api/users/{user}/send"),
        Operation(method: "GET", path: "/api/events"),
        Operation(method: "GET", path: "/api/openapi.json"),
    ]

    /// The OpenAPI document with this build's version: ``ChannelsNode/version`` is the one place a release sets it.
    static let document: [UInt8] = {
        let marker = Array(#""version": "served as ChannelsNode.version""#.utf8)
        let versioned = Array(#""version": "\#(ChannelsNode.version)""#.utf8)
        let bytes = PackageResources.openapi_json
        guard let start = bytes.indices.first(where: { bytes[$0...].starts(with: marker) }) else { return bytes }
        return Array(bytes[..<start]) + versioned + Array(bytes[(start + marker.count)...])
    }()

    let configuration: ServerAPIConfiguration
    let layer: any ChannelLayer
    let directory: (any ClusterDirectory)?
    let control: NodeControlService
    let nodeID: String
    let metrics: NodeMetrics
    /// This node's own report (what it answers to a `report` control message).
    let ownReport: @Sendable () -> MessageValue
    /// The bodies the node holds at once.
    let bodies: BodyBudget
    /// The admin event streams.
    let streams: EventStreamHub
    private let keyring: APIKeyring
    private let limiter: APIRateLimiter

    init(
        configuration: ServerAPIConfiguration, layer: any ChannelLayer, directory: (any ClusterDirectory)?, control: NodeControlService,
        nodeID: String, metrics: NodeMetrics, ownReport: @escaping @Sendable () -> MessageValue
    ) {
        self.configuration = configuration
        self.layer = layer
        self.directory = directory ?? (layer as? any ClusterDirectory)
        self.control = control
        self.nodeID = nodeID
        self.metrics = metrics
        self.ownReport = ownReport
        self.keyring = APIKeyring(keys: configuration.keys)
        self.limiter = APIRateLimiter(keys: configuration.keys.count, perSecond: configuration.requestsPerSecond, burst: configuration.burst)
        self.bodies = BodyBudget(limit: configuration.maxBodiesInFlight)
        self.streams = EventStreamHub(limit: configuration.maxEventStreams, metrics: metrics)
    }

    /// Decides a request to a path under `/api/` from its head, before any of its body is read: the key and
    /// its rate (401, 429), the route and method (404, 405), the declared size (413) and the node's budget
    /// of bodies in flight (503). Only an authenticated request to a route that takes a body has it read.
    func examine(_ request: inout HTTPRequest) -> HeadDecision {
        metrics.apiRequests.increment()
        do throws(APIError) {
            let head = request.head
            // The document describes the API; it holds no secret.
            if request.path == "/api/openapi.json" {
                guard head.method == .GET || head.method == .HEAD else { throw Self.methodNotAllowed(["GET"]) }
                return .ignoreBody
            }
            request.apiKey = try authenticate(head)
            let operation = try Self.operation(path: request.path, method: head.method)
            let declared = head.headers.first(name: "content-length").flatMap { Int($0) }
            let chunked = head.headers.contains(name: "transfer-encoding")
            guard operation.method == "POST", chunked || (declared ?? 0) > 0 else { return .ignoreBody }
            // A chunked body may be as large as the limit: it holds that much of the budget.
            let size = chunked ? configuration.maxBodySize : declared ?? 0
            guard size <= configuration.maxBodySize else { throw bodyTooLarge }
            guard let reservation = bodies.reserve(size) else {
                metrics.apiBodiesRefused.increment()
                throw APIError(
                    .serviceUnavailable, "busy",
                    "the node holds \(bodies.limit) bytes of request bodies at once (--api-max-bodies-in-flight) and they are in use; retry after Retry-After",
                    headers: ["Retry-After": "1"]
                )
            }
            request.bodyReservation = reservation
            return .readBody(limit: size)
        } catch {
            if error.status == .unauthorized { metrics.apiUnauthorized.increment() }
            if error.status == .tooManyRequests { metrics.apiRateLimited.increment() }
            return .answer(error.answer)
        }
    }

    /// Answers a request ``examine(_:)`` let through, its body read.
    func answer(_ request: HTTPRequest) async -> HTTPAnswer {
        do {
            return try await route(request)
        } catch {
            return error.answer
        }
    }

    private var bodyTooLarge: APIError {
        APIError(
            .payloadTooLarge, "body_too_large",
            "the request body is larger than \(configuration.maxBodySize) bytes (--api-max-body-size); send smaller messages"
        )
    }

    private func route(_ request: HTTPRequest) async throws(APIError) -> HTTPAnswer {
        let path = request.path
        if path == "/api/openapi.json" {
            return HTTPAnswer(status: .ok, headers: ["Content-Type": "application/json", "Cache-Control": "max-age=300"], body: ByteBuffer(bytes: Self.document))
        }
        // examine(_:) checked the key and charged its rate.
        guard request.apiKey != nil else { throw .unauthorized }
        if request.bodyTooLarge { throw bodyTooLarge }
        let segments = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst(2).map { String($0) }
        let method = request.head.method
        func only(_ allowed: HTTPMethod...) throws(APIError) {
            guard allowed.contains(method) || (method == .HEAD && allowed.contains(.GET)) else {
                throw Self.methodNotAllowed(allowed.map(\.rawValue))
            }
        }
        switch segments.count {
        case 1 where segments[0] == "groups":
            try only(.GET)
            return try await listGroups(pattern: request.query["pattern"] ?? "*")
        case 1 where segments[0] == "nodes":
            try only(.GET)
            return try await listNodes()
        case 1 where segments[0] == "broadcast":
            try only(.POST)
            return try await broadcast(try Self.jsonObject(request.body))
        case 1 where segments[0] == "events":
            try only(.GET)
            return try events(group: request.query["group"])
        case 3 where segments[0] == "groups":
            let group = try Self.group(segments[1])
            switch segments[2] {
            case "send":
                try only(.POST)
                return try await sendToGroup(group, try Self.message(request.body))
            case "members":
                try only(.GET)
                return try await members(of: group)
            case "presence":
                try only(.GET)
                return try await presence(of: group)
            case "history":
                try only(.GET)
                return try await history(of: group, query: request.query)
            default:
                break
            }
        case 3 where segments[0] == "channels":
            switch segments[2] {
            case "send":
                try only(.POST)
                return try await sendToChannel(try channel(segments[1]), try Self.message(request.body))
            case "disconnect":
                try only(.POST)
                return try await disconnect(.channel(try channel(segments[1])), try Self.optionalJSONObject(request.body))
            default:
                break
            }
        case 3 where segments[0] == "users" && segments[2] == "send":
            try only(.POST)
            let user = try Self.decode(segments[1])
            guard let group = UserGroup.name(for: user) else {
                throw .badRequest(
                    "invalid_user",
                    "user.<sub> must be a valid group name (ASCII letters, digits, hyphens, underscores, periods; under 100 characters): this user has no group"
                )
            }
            return try await sendToUser(user, group: group, try Self.message(request.body))
        case 3 where segments[0] == "users" && segments[2] == "disconnect":
            try only(.POST)
            let user = try Self.decode(segments[1])
            guard !user.isEmpty, user.utf8.count <= 256 else {
                throw .badRequest("invalid_user", "a user is the token's sub claim: 1 to 256 bytes, percent-encoded in the path")
            }
            return try await disconnect(.user(user), try Self.optionalJSONObject(request.body))
        default:
            break
        }
        throw .notFound("no API route \(method) \(path); the routes are listed in /api/openapi.json")
    }

    /// The index of the key the head carries, its rate charged.
    private func authenticate(_ head: HTTPRequestHead) throws(APIError) -> Int {
        guard let key = keyring.key(fromAuthorization: head.headers.first(name: "authorization")) else { throw .unauthorized }
        guard limiter.allow(key: key) else {
            throw APIError(
                .tooManyRequests, "rate_limited",
                "more than \(configuration.requestsPerSecond) requests per second with this key (--api-rate-limit, --api-burst); slow down and retry",
                headers: ["Retry-After": "1"]
            )
        }
        return key
    }

    /// The operation serving `path` with `method` (`HEAD` where `GET` is served): 404 when no route has
    /// the path, 405 with the methods it takes when routes have it with other methods.
    static func operation(path: String, method: HTTPMethod) throws(APIError) -> Operation {
        let segments = path.split(separator: "/", omittingEmptySubsequences: false)
        let routes = operations.filter { operation in
            let template = operation.path.split(separator: "/", omittingEmptySubsequences: false)
            return template.count == segments.count
                && zip(template, segments).allSatisfy { pattern, segment in pattern == segment || (pattern.first == "{" && !segment.isEmpty) }
        }
        guard !routes.isEmpty else { throw .notFound("no API route \(method.rawValue) \(path); the routes are listed in /api/openapi.json") }
        guard let operation = routes.first(where: { $0.method == method.rawValue || (method == .HEAD && $0.method == "GET") }) else {
            throw methodNotAllowed(routes.map(\.method))
        }
        return operation
    }

    private static func methodNotAllowed(_ allowed: [String]) -> APIError {
        APIError(
            .methodNotAllowed, "method_not_allowed", "this route takes \(allowed.joined(separator: ", "))",
            headers: ["Allow": allowed.joined(separator: ", ")]
        )
    }

    // MARK: - Input

    /// Percent-decodes a path segment (`+` stays `+`).
    static func decode(_ segment: String) throws(APIError) -> String {
        var bytes: [UInt8] = []
        var iterator = segment.utf8.makeIterator()
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "%") else {
                bytes.append(byte)
                continue
            }
            guard let high = iterator.next(), let low = iterator.next(), let value = UInt8(String(decoding: [high, low], as: UTF8.self), radix: 16) else {
                throw .badRequest("invalid_path", "a path segment has a malformed percent escape: \(segment)")
            }
            bytes.append(value)
        }
        guard let text = String(validating: bytes, as: UTF8.self) else { throw .badRequest("invalid_path", "a path segment is not UTF-8") }
        return text
    }

    /// A channel the channel routes may address: a valid name that is not one of the layer's group or
    /// presence channels (`<prefix>__group__...`, `<prefix>__presence__...`). Those carry the nodes' control
    /// group, presence events and every group's messages: only the group routes reach groups, and they keep
    /// the nodes' own groups out of reach.
    func channel(_ segment: String) throws(APIError) -> String {
        let channel = try Self.decode(segment)
        guard ChannelNames.isValidChannel(channel) else { throw .badRequest("invalid_channel", ChannelNames.errorText("Channel")) }
        let prefix = configuration.layerPrefix
        if let reserved = ["\(prefix)__group__", "\(prefix)__presence__"].first(where: { channel.hasPrefix($0) }) {
            throw .badRequest(
                "reserved_channel",
                "\(channel) is one of the channel layer's own channels (\(reserved)...): send to a group with POST /api/groups/{group}/send, and to one connection with its channel (\(prefix)specific....)"
            )
        }
        return channel
    }

    static func group(_ segment: String) throws(APIError) -> String {
        let group = try decode(segment)
        guard ChannelNames.isValidGroup(group) else { throw .badRequest("invalid_group", ChannelNames.errorText("Group")) }
        if ChannelsNode.unlistedGroupPrefixes.contains(where: { group.hasPrefix($0) }) {
            throw .badRequest("reserved_group", "\(group) is one of the nodes' own groups (\(ChannelsNode.unlistedGroupPrefixes.joined(separator: ", "))); pick another name")
        }
        return group
    }

    /// The body as a JSON object.
    static func jsonObject(_ body: ByteBuffer?) throws(APIError) -> OrderedDictionary<String, MessageValue> {
        guard let body, body.readableBytes > 0 else {
            throw .badRequest("invalid_json", #"the body is empty: send a JSON object, like {"type": "chat.message", "message": "hi"}"#)
        }
        let value: MessageValue
        do {
            value = try JSON.parse(bytes: Array(body.readableBytesView), limits: .init(maxSize: body.readableBytes, maxDepth: 64))
        } catch {
            throw .badRequest("invalid_json", "the body is not valid JSON: \(error.message)")
        }
        guard case .map(let object) = value else { throw .badRequest("invalid_json", "the body must be a JSON object") }
        return object
    }

    static func optionalJSONObject(_ body: ByteBuffer?) throws(APIError) -> OrderedDictionary<String, MessageValue> {
        guard let body, body.readableBytes > 0 else { return [:] }
        return try jsonObject(body)
    }

    /// A layer message from a JSON object: it needs a string `type`.
    static func message(_ object: OrderedDictionary<String, MessageValue>) throws(APIError) -> Message {
        guard let type = object["type"] else {
            throw .badRequest("missing_type", #"the message needs a "type", like {"type": "chat.message", "message": "hi"}: consumers pick their handler by it"#)
        }
        guard let text = type.string, !text.isEmpty else { throw .badRequest("missing_type", #"the message's "type" must be a non-empty string"#) }
        return Message(object)
    }

    static func message(_ body: ByteBuffer?) throws(APIError) -> Message {
        try message(try jsonObject(body))
    }

    // MARK: - Output

    static func json(_ status: HTTPResponseStatus, _ value: MessageValue) -> HTTPAnswer {
        let text = (try? JSON.serialize(jsonSafe(value))) ?? "{}"
        return HTTPAnswer(status: status, headers: ["Content-Type": "application/json", "Cache-Control": "no-store"], body: ByteBuffer(string: text))
    }

    /// What JSON cannot carry, made so: bytes become base64 text, NaN and infinities null.
    static func jsonSafe(_ value: MessageValue) -> MessageValue {
        switch value {
        case .bytes(let bytes): .string(Base64.encode(bytes))
        case .double(let number) where !number.isFinite: .null
        case .array(let elements): .array(elements.map(jsonSafe))
        case .map(let map): .map(map.mapValues(jsonSafe))
        default: value
        }
    }

    /// A layer failure as an API error: Redis trouble is 503 (retry), bad names and messages 400.
    static func failure(_ error: ChannelLayerError, doing what: String) -> APIError {
        switch error.code {
        case .invalidName: APIError(.badRequest, "invalid_name", error.message)
        case .invalidMessage: APIError(.badRequest, "invalid_message", error.message)
        case .channelFull: APIError(.serviceUnavailable, "channel_full", error.message, headers: ["Retry-After": "1"])
        default: APIError(.serviceUnavailable, "unavailable", "\(what) failed: \(error.message); retry when the channel layer is back", headers: ["Retry-After": "1"])
        }
    }
}

/// Base64 without Foundation, for bytes in JSON answers.
enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    static func encode(_ bytes: [UInt8]) -> String {
        var output: [UInt8] = []
        output.reserveCapacity((bytes.count + 2) / 3 * 4)
        var index = 0
        while index < bytes.count {
            let chunk = bytes[index..<min(index + 3, bytes.count)]
            let value = chunk.enumerated().reduce(UInt32(0)) { $0 | UInt32($1.element) << (16 - 8 * UInt32($1.offset)) }
            for position in 0..<4 {
                output.append(position <= chunk.count ? alphabet[Int(value >> (18 - 6 * UInt32(position)) & 0x3f)] : UInt8(ascii: "="))
            }
            index += 3
        }
        return String(decoding: output, as: UTF8.self)
    }
}
