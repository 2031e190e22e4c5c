/// An error from the Redis client: what failed, the server's text where there is one, and what to do.
///
/// Compare ``code`` to the static members to branch on the kind of failure:
/// ```swift
/// catch let error as RedisError where error.code == .authenticationFailed { ... }
/// ```
public struct RedisError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The kind of failure.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case invalidURL
            case connectionRefused
            case connectionFailed
            case connectionClosed
            case timeout
            case authenticationRequired
            case authenticationFailed
            case errorReply
            case protocolError
            case unsupported
            case clientClosed
            case tlsConfigurationInvalid
            case tlsHandshakeFailed
            case sentinelMasterUnknown
        }

        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// The URL could not be parsed or names an unsupported scheme.
        public static let invalidURL = Code(.invalidURL)
        /// Nothing listens at the address (ECONNREFUSED): start Redis or fix the URL.
        public static let connectionRefused = Code(.connectionRefused)
        /// The connection could not be established for another reason (DNS, unreachable, socket path).
        public static let connectionFailed = Code(.connectionFailed)
        /// The connection closed before the reply arrived: the command may or may not have run.
        public static let connectionClosed = Code(.connectionClosed)
        /// The connect or command timeout elapsed.
        public static let timeout = Code(.timeout)
        /// The server demands a password (`NOAUTH`) and none was configured.
        public static let authenticationRequired = Code(.authenticationRequired)
        /// The server refused the credentials (`WRONGPASS`, `ERR invalid password`).
        public static let authenticationFailed = Code(.authenticationFailed)
        /// The server answered the command with an error reply.
        public static let errorReply = Code(.errorReply)
        /// The server sent bytes that are not RESP2, or a reply of an unexpected shape.
        public static let protocolError = Code(.protocolError)
        /// The request needs something hiredis 0.14.1 or this client does not offer (RESP3, TLS over a Unix socket).
        public static let unsupported = Code(.unsupported)
        /// The client or subscriber was closed by its owner.
        public static let clientClosed = Code(.clientClosed)
        /// A TLS file named in a `rediss://` URL (`ca=`, `cert=`, `key=`) is missing, unreadable or not PEM,
        /// or the key does not belong to the certificate: fix the file or the path; retrying cannot help.
        public static let tlsConfigurationInvalid = Code(.tlsConfigurationInvalid)
        /// The TLS handshake failed: the server's certificate is not signed by the given CA or does not name the
        /// host, the server wants a client certificate, or the port does not speak TLS.
        public static let tlsHandshakeFailed = Code(.tlsHandshakeFailed)
        /// The sentinels answered but none of them monitors a master of the configured name.
        public static let sentinelMasterUnknown = Code(.sentinelMasterUnknown)

        public var description: String { base.rawValue }
    }

    /// The kind of failure.
    public let code: Code
    /// What failed and what to do about it.
    public let message: String
    /// The server's error text, verbatim, when the failure is an error reply.
    public let serverMessage: String?
    /// Whether the command may have run although the call failed: it was written to Redis and no reply
    /// came (``Code/timeout``, ``Code/connectionClosed``). `false` when the command certainly did not run:
    /// it was never written (Redis unreachable, the connection already closed), or Redis refused it.
    ///
    /// A command whose reply timed out is not sent later: the client resets the connection at once, so
    /// bytes still in the socket's send queue are discarded instead of reaching Redis when a partition
    /// heals. (Bytes the Redis host already received may still run if Redis itself was stalled.)
    public internal(set) var mayHaveRun: Bool

    /// Creates an error.
    public init(_ code: Code, _ message: String, serverMessage: String? = nil) {
        self.code = code
        self.message = message
        self.serverMessage = serverMessage
        self.mayHaveRun = code == .timeout || code == .connectionClosed
    }

    /// This error, for a command that was never written.
    func notSent() -> RedisError {
        var error = self
        error.mayHaveRun = false
        return error
    }

    /// This error, for a command that was written and not answered: whatever ended the connection, it may have run.
    func mayHaveRunAnyway() -> RedisError {
        var error = self
        error.mayHaveRun = true
        return error
    }

    /// Whether retrying the same connection settings can succeed (false for bad credentials and bad URLs).
    public var isRetryable: Bool {
        switch code {
        case .authenticationFailed, .authenticationRequired, .invalidURL, .unsupported, .clientClosed,
            .tlsConfigurationInvalid, .tlsHandshakeFailed, .sentinelMasterUnknown:
            false
        default: true
        }
    }

    public var description: String { "RedisError.\(code): \(message)" }
}

extension RedisError {
    /// Maps an error reply to an error, recognising authentication failures by their prefix: what `send` throws
    /// for it, for callers that get replies without waiting (``RedisConnection/enqueue(_:onReply:)``).
    public static func fromErrorReply(_ text: String, command: String) -> RedisError {
        if text.hasPrefix("NOAUTH") {
            return RedisError(
                .authenticationRequired,
                "Redis requires authentication (\(text)); put the password in the URL: redis://:PASSWORD@host:port",
                serverMessage: text
            )
        }
        if text.hasPrefix("WRONGPASS") || text.hasPrefix("ERR invalid password")
            || text.hasPrefix("ERR invalid username-password pair")
        {
            return RedisError(
                .authenticationFailed,
                "Redis refused the credentials (\(text)); check the user and password in the URL",
                serverMessage: text
            )
        }
        if text.hasPrefix("ERR AUTH <password> called without any password configured")
            || text.hasPrefix("ERR Client sent AUTH, but no password is set")
        {
            return RedisError(
                .authenticationFailed,
                "a password was given but the Redis server has none configured (\(text)); remove it from the URL",
                serverMessage: text
            )
        }
        return RedisError(.errorReply, "\(command) failed: \(text)", serverMessage: text)
    }
}
