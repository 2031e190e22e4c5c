/// A step of the WebSocket handshake, run in order before a consumer is created: authentication, origin
/// checks, rate limits. A step may add to the scope (the authenticated user) or refuse the connection.
///
/// Middleware must decide from the request alone: a refused handshake is evaluated again to write the
/// HTTP answer.
public protocol HandshakeMiddleware: Sendable {
    func handshake(_ request: inout HandshakeRequest) async throws(HandshakeRejection)
}

/// The handshake as middleware sees it.
public struct HandshakeRequest: Sendable {
    /// The scope the consumer will get; middleware may set ``Scope/user``.
    public var scope: Scope
}

/// A refused handshake: the HTTP status and a short reason for the response body.
public struct HandshakeRejection: Error, Sendable, Hashable {
    public let status: Int
    public let reason: String

    public init(status: Int, reason: String) {
        self.status = status
        self.reason = reason
    }
}

/// Refuses browsers from origins not in the list (HTTP 403), like Django's `OriginValidator`.
///
/// Entries are full origins (`https://chat.example.com`) or `*`. WebSocket handshakes without an `Origin`
/// header (non-browser clients) pass only when the list holds `*`, as in Django. Event streams without one
/// pass: browsers send no `Origin` on a same-origin `EventSource`, and a cross-origin one is refused here
/// by its `Origin` (and would be by CORS: the node allows only these origins to read a stream).
public struct OriginCheckMiddleware: HandshakeMiddleware {
    public let allowed: Set<String>

    public init(allowed: some Sequence<String>) {
        self.allowed = Set(allowed.map { $0.lowercased() })
    }

    public func handshake(_ request: inout HandshakeRequest) async throws(HandshakeRejection) {
        if allowed.contains("*") { return }
        guard let origin = request.scope.header("origin")?.lowercased() else {
            if request.scope.transport == .eventStream { return }
            throw HandshakeRejection(status: 403, reason: "no Origin header; this node only accepts browsers from its allowed origins")
        }
        guard allowed.contains(origin) else {
            throw HandshakeRejection(status: 403, reason: "origin \(origin) is not allowed")
        }
    }
}
