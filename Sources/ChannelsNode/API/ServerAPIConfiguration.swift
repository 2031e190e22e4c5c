/// The node's HTTP API (`/api/...`) and admin page (`/admin`): off unless keys are given.
///
/// Keys are bearer secrets (`Authorization: Bearer <key>`), compared in constant time. Each key has its
/// own token bucket of requests, so one misbehaving backend cannot starve the others. A request is decided
/// from its head (key, route, size) before any of its body is read, and the bodies a node holds at once are
/// bounded as a whole.
public struct ServerAPIConfiguration: Sendable {
    /// The accepted keys; empty turns the API and the admin page off (they answer 404).
    public var keys: [String]
    /// The largest request body in bytes; larger ones are answered 413 without being kept.
    public var maxBodySize: Int
    /// Requests per second each key may make on average; 0 = no limit. Over it: 429.
    public var requestsPerSecond: Double
    /// Requests a key may make at once above that rate.
    public var burst: Int
    /// How long a disconnect or a report waits for the nodes' answers.
    public var replyTimeout: Duration
    /// The most bytes of request bodies the node holds at once, over all requests: a body counts from its
    /// head (its `Content-Length`, or ``maxBodySize`` when it comes in chunks) until it is answered. A head
    /// whose body does not fit is answered 503 with `Retry-After`.
    public var maxBodiesInFlight: Int
    /// The most admin event streams (`GET /api/events`) open at once on this node; more are answered 503.
    public var maxEventStreams: Int
    /// The channel layer's prefix (`--prefix`; channels_redis' `asgi`): the channel routes refuse the layer's
    /// group and presence channels, `<prefix>__group__...` and `<prefix>__presence__...`.
    public var layerPrefix: String

    /// The shortest key accepted: shorter ones are guessable.
    public static let minimumKeyLength = 16

    public init(
        keys: [String] = [], maxBodySize: Int = 1024 * 1024, requestsPerSecond: Double = 100, burst: Int = 200,
        replyTimeout: Duration = .seconds(1), maxBodiesInFlight: Int = 16 * 1024 * 1024, maxEventStreams: Int = 32, layerPrefix: String = "asgi"
    ) {
        self.keys = keys
        self.maxBodySize = maxBodySize
        self.requestsPerSecond = requestsPerSecond
        self.burst = burst
        self.replyTimeout = replyTimeout
        self.maxBodiesInFlight = maxBodiesInFlight
        self.maxEventStreams = maxEventStreams
        self.layerPrefix = layerPrefix
    }

    /// The API is off.
    public static let off = ServerAPIConfiguration()

    /// Whether the API and the admin page are served.
    public var isEnabled: Bool { !keys.isEmpty }

    /// Keys from a key file's text: one per line; blank lines and lines starting with `#` are skipped.
    public static func keys(fromFile text: String) -> [String] {
        text.split(whereSeparator: \.isNewline).map { $0.trimmingWhitespace() }.filter { !$0.isEmpty && !$0.hasPrefix("#") }
    }

    /// Checks the settings; the error says what to change.
    public func validate() throws(NodeError) {
        if let short = keys.first(where: { $0.count < Self.minimumKeyLength }) {
            throw NodeError(
                "an API key of \(short.count) characters is too short to be secret: use \(Self.minimumKeyLength) or more (openssl rand -hex 32)"
            )
        }
        if keys.contains(where: { $0.contains(where: { $0 == " " || $0 == "," }) }) {
            throw NodeError("API keys may not contain spaces or commas (openssl rand -hex 32 makes a good one)")
        }
        guard maxBodySize >= 1024 else { throw NodeError("--api-max-body-size must be at least 1024 bytes") }
        guard maxBodiesInFlight >= maxBodySize else {
            throw NodeError("--api-max-bodies-in-flight (\(maxBodiesInFlight) bytes) must be at least --api-max-body-size (\(maxBodySize) bytes), or no body of that size would fit")
        }
        guard maxEventStreams >= 1 else { throw NodeError("--api-max-event-streams must be at least 1") }
        guard requestsPerSecond >= 0, burst >= 1 else { throw NodeError("--api-rate-limit must be 0 or more and --api-burst positive") }
    }
}

extension StringProtocol {
    func trimmingWhitespace() -> String {
        String(drop { $0.isWhitespace }.reversed().drop { $0.isWhitespace }.reversed())
    }
}
