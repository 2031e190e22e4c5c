/// The WebSocket close codes a node uses, and why. Clients and load balancers can rely on these.
public enum CloseCode {
    /// 1000: the consumer or the client ended the conversation.
    public static let normal: UInt16 = 1000
    /// 1001: the node is draining for shutdown; reconnect (the load balancer picks another node).
    public static let goingAway: UInt16 = 1001
    /// 1007: a text frame that is not UTF-8, or (with the close policy) not JSON.
    public static let invalidPayload: UInt16 = 1007
    /// 1008: a policy refused the connection after the handshake (a join outside the token's groups).
    public static let policyViolation: UInt16 = 1008
    /// 1009: a message larger than the node's maximum (64 KiB by default).
    public static let messageTooBig: UInt16 = 1009
    /// 1002: a WebSocket protocol error (a bad fragment sequence, say).
    public static let protocolError: UInt16 = 1002
    /// 1006: the socket closed without a close frame (never sent; what `disconnect` gets then).
    public static let abnormal: UInt16 = 1006
    /// 1011: the consumer failed, or the channel layer could not serve the connection (Redis down).
    public static let internalError: UInt16 = 1011
    /// 1013: the node is draining and takes no new connections; try again (another node).
    public static let tryAgainLater: UInt16 = 1013
    /// 4008: the client did not read fast enough and its outbound queue filled up.
    public static let slowClient: UInt16 = 4008
    /// 4408: the client answered nothing, not even a pong, for a whole ping interval.
    public static let pingTimeout: UInt16 = 4408
    /// 4029: the client sent messages faster than the node's rate limit allows.
    public static let rateLimited: UInt16 = 4029
    /// The user already has `--max-connections-per-user` connections on the cluster's nodes.
    public static let tooManyConnectionsForUser: UInt16 = 4429
    /// 4403: `connect()` rejected the connection (the Django convention for a denied connection is 403).
    public static let rejected: UInt16 = 4403

    /// 4000 + HTTP status: a handshake middleware refused the connection (4403 forbidden origin, 4401 no or
    /// bad token...). The close reason says why; a plain GET to the same URL returns the HTTP status itself.
    public static func rejectedHandshake(status: Int) -> UInt16 {
        UInt16(clamping: 4000 + min(max(status, 0), 999))
    }
}
