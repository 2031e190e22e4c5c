/// How a node bridges WebSocket paths to Django workers (`channels-node --django-path`).
public struct DjangoBridgeConfiguration: Sendable {
    /// Path prefixes whose upgrades go to the workers, ahead of every Swift route (`/ws/`).
    public var pathPrefixes: [String]
    /// The node's listening address, the ASGI scope's `server`.
    public var server: (host: String, port: Int)
    /// How long a worker has to accept or close a new connection before the handshake is refused with 504
    /// (just under the node's handshake timeout, ``connectTimeout(handshakeTimeout:)``).
    public var connectTimeout: Duration
    /// Events of one connection the node sends before its application took them; beyond, the connection waits.
    public var window: Int
    /// How long a hole in a worker's numbered actions may stay open before the connection is given up (1012).
    public var holeTimeout: Duration
    /// How long a failing send to a worker is retried before the connections it carried are given up (1012).
    public var sendRetryTime: Duration
    /// Seconds between the node's heartbeats to the workers.
    public var heartbeatInterval: Duration
    /// The groups the node's layer keeps a history for (`--history`): the workers send their consumers'
    /// `group_send` into those through the node, numbered, so that clients recover them.
    public var historyPatterns: [String]

    public init(
        pathPrefixes: [String],
        server: (host: String, port: Int) = ("127.0.0.1", 8000),
        connectTimeout: Duration = .seconds(10),
        window: Int = 64,
        holeTimeout: Duration = .seconds(5),
        sendRetryTime: Duration = .seconds(10),
        heartbeatInterval: Duration = .seconds(1),
        historyPatterns: [String] = []
    ) {
        self.historyPatterns = historyPatterns
        self.pathPrefixes = pathPrefixes
        self.server = server
        self.connectTimeout = connectTimeout
        self.window = window
        self.holeTimeout = holeTimeout
        self.sendRetryTime = sendRetryTime
        self.heartbeatInterval = heartbeatInterval
    }

    /// The connect timeout for a node's handshake timeout: a little shorter, so that the client gets the 504
    /// before the node drops a handshake that took too long.
    public static func connectTimeout(handshakeTimeout: Duration) -> Duration {
        handshakeTimeout - min(.seconds(1), handshakeTimeout / 4)
    }

    /// Checks a prefix given on the command line: it starts with `/`; `/ws` is read as `/ws/` so that it does
    /// not take `/wsx` too.
    public static func prefix(_ text: String) throws(DjangoBridgeError) -> String {
        guard text.hasPrefix("/"), !text.contains("?"), !text.contains("#"), !text.contains(" ") else {
            throw DjangoBridgeError("--django-path '\(text)' must be a path prefix starting with '/', like /ws/")
        }
        return text.hasSuffix("/") ? text : text + "/"
    }
}

/// A Django bridge setting that cannot work; the message names it and what to do.
public struct DjangoBridgeError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
