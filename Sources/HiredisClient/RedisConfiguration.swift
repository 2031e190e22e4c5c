/// Where and how to connect to Redis.
///
/// Usually made from a URL:
/// - `redis://[[user]:password@]host[:port][/db]`, e.g. `redis://:s3cret@127.0.0.1:6380/2`
/// - `unix:///path/to/redis.sock[?db=N&password=P&username=U]`
///
/// `rediss://` is refused: Debian's hiredis 0.14.1 has no TLS support.
public struct RedisConfiguration: Sendable, Hashable {
    /// A TCP host and port, or a Unix domain socket path.
    public enum Address: Sendable, Hashable, CustomStringConvertible {
        case tcp(host: String, port: Int)
        case unixSocket(path: String)

        public var description: String {
            switch self {
            case .tcp(let host, let port): host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
            case .unixSocket(let path): "unix://\(path)"
            }
        }
    }

    /// The server's address.
    public var address: Address
    /// The ACL user for `AUTH user password`; `nil` uses `AUTH password` (the `default` user).
    public var username: String?
    /// The password; `nil` sends no `AUTH`.
    public var password: String?
    /// The logical database chosen with `SELECT` after connecting (0 sends nothing).
    public var database: Int
    /// How long connecting, authenticating and selecting the database may take in all.
    public var connectTimeout: Duration
    /// How long a command may wait for its reply; `nil` waits as long as the connection lives.
    ///
    /// A timed-out command is failed with ``RedisError/Code/timeout``; its reply, should it
    /// still come, is discarded, so later replies stay matched to their callers.
    public var commandTimeout: Duration?
    /// A name set with `CLIENT SETNAME`, shown by `CLIENT LIST` (letters, digits, `-`, `_`, `.`).
    public var clientName: String?

    /// Creates a configuration.
    public init(
        address: Address = .tcp(host: "127.0.0.1", port: 6379),
        username: String? = nil,
        password: String? = nil,
        database: Int = 0,
        connectTimeout: Duration = .seconds(5),
        commandTimeout: Duration? = .seconds(10),
        clientName: String? = nil
    ) {
        self.address = address
        self.username = username
        self.password = password
        self.database = database
        self.connectTimeout = connectTimeout
        self.commandTimeout = commandTimeout
        self.clientName = clientName
    }

    /// Parses a `redis://` or `unix://` URL.
    /// - Throws: ``RedisError`` with code ``RedisError/Code/invalidURL`` saying what is wrong,
    ///   or ``RedisError/Code/unsupported`` for `rediss://`.
    public init(url: String) throws(RedisError) {
        self.init()
        func invalid(_ why: String) -> RedisError {
            RedisError(
                .invalidURL,
                "invalid Redis URL '\(Self.redact(url))': \(why); expected redis://[[user]:password@]host[:port][/db] or unix:///path/to/socket"
            )
        }
        guard let schemeEnd = url.firstRange(of: "://") else { throw invalid("no scheme") }
        let scheme = url[..<schemeEnd.lowerBound].lowercased()
        var rest = Substring(url[schemeEnd.upperBound...])

        var query: [String: String] = [:]
        if let questionMark = rest.firstIndex(of: "?") {
            for pair in rest[rest.index(after: questionMark)...].split(separator: "&") {
                let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                guard let key = parts.first, let value = Self.percentDecode(parts.count > 1 ? parts[1] : "") else {
                    throw invalid("bad query parameter '\(pair)'")
                }
                query[String(key)] = value
            }
            rest = rest[..<questionMark]
        }

        switch scheme {
        case "redis":
            break
        case "rediss":
            throw RedisError(
                .unsupported,
                "rediss:// (TLS) is not supported: Debian's hiredis 0.14.1 has no TLS; run a TLS proxy such as stunnel or haproxy on loopback and use redis://"
            )
        case "unix":
            // unix://[user:password@]/path
            if let at = rest.lastIndex(of: "@"), !rest[..<at].contains("/") {
                try parseUserInfo(rest[..<at], invalid: invalid)
                rest = rest[rest.index(after: at)...]
            }
            guard rest.hasPrefix("/"), rest.count > 1 else { throw invalid("a unix socket URL needs an absolute path") }
            address = .unixSocket(path: String(rest))
            try applyQuery(query, invalid: invalid)
            return
        default:
            throw invalid("unknown scheme '\(scheme)'")
        }

        var authority = rest
        if let slash = rest.firstIndex(of: "/") {
            authority = rest[..<slash]
            let path = rest[rest.index(after: slash)...]
            if !path.isEmpty {
                guard let db = Int(path), db >= 0 else { throw invalid("database '\(path)' is not a non-negative integer") }
                database = db
            }
        }
        if let at = authority.lastIndex(of: "@") {
            try parseUserInfo(authority[..<at], invalid: invalid)
            authority = authority[authority.index(after: at)...]
        }
        var host = "127.0.0.1"
        var port = 6379
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { throw invalid("unclosed '[' in IPv6 host") }
            host = String(authority[authority.index(after: authority.startIndex)..<close])
            let after = authority[authority.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":"), let value = Int(after.dropFirst()) else { throw invalid("bad port '\(after)'") }
                port = value
            }
        } else if let colon = authority.lastIndex(of: ":") {
            if colon != authority.startIndex { host = String(authority[..<colon]) }
            guard let value = Int(authority[authority.index(after: colon)...]) else {
                throw invalid("bad port '\(authority[authority.index(after: colon)...])'")
            }
            port = value
        } else if !authority.isEmpty {
            host = String(authority)
        }
        guard (1...65535).contains(port) else { throw invalid("port \(port) is out of range") }
        address = .tcp(host: host, port: port)
        try applyQuery(query, invalid: invalid)
    }

    private mutating func parseUserInfo(_ userInfo: Substring, invalid: (String) -> RedisError) throws(RedisError) {
        let parts = userInfo.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
        guard let user = Self.percentDecode(parts[0]) else { throw invalid("bad percent-encoding in user") }
        if parts.count == 2 {
            guard let pass = Self.percentDecode(parts[1]) else { throw invalid("bad percent-encoding in password") }
            password = pass
            username = user.isEmpty ? nil : user
        } else {
            // redis://secret@host is how redis-py and channels_redis users write a bare password.
            password = user
        }
    }

    private mutating func applyQuery(_ query: [String: String], invalid: (String) -> RedisError) throws(RedisError) {
        for (key, value) in query {
            switch key {
            case "db":
                guard let db = Int(value), db >= 0 else { throw invalid("db '\(value)' is not a non-negative integer") }
                database = db
            case "password": password = value
            case "username": username = value.isEmpty ? nil : value
            case "name": clientName = value
            default: throw invalid("unknown query parameter '\(key)'")
            }
        }
    }

    /// The URL with the password replaced by `***`, for logs and error messages.
    public var redactedDescription: String {
        var userInfo = ""
        if let password, !password.isEmpty {
            userInfo = "\(username ?? ""):***@"
        } else if let username {
            userInfo = "\(username)@"
        }
        switch address {
        case .tcp:
            return "redis://\(userInfo)\(address)" + (database != 0 ? "/\(database)" : "")
        case .unixSocket(let path):
            return "unix://\(userInfo)\(path)" + (database != 0 ? "?db=\(database)" : "")
        }
    }

    static func redact(_ url: String) -> String {
        guard let schemeEnd = url.firstRange(of: "://"), let at = url.lastIndex(of: "@"), at > schemeEnd.upperBound else {
            return url
        }
        let userInfo = url[schemeEnd.upperBound..<at]
        guard let colon = userInfo.firstIndex(of: ":") else { return url[..<schemeEnd.upperBound] + "***" + url[at...] }
        return url[..<colon] + ":***" + url[at...]
    }

    static func percentDecode(_ text: Substring) -> String? {
        guard text.contains("%") else { return String(text) }
        var bytes: [UInt8] = []
        var iterator = text.utf8.makeIterator()
        while let byte = iterator.next() {
            if byte == UInt8(ascii: "%") {
                guard let high = iterator.next().flatMap(hexValue), let low = iterator.next().flatMap(hexValue) else {
                    return nil
                }
                bytes.append(high << 4 | low)
            } else {
                bytes.append(byte)
            }
        }
        return String(validating: bytes, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}

extension Duration {
    /// The duration as NIO's `TimeAmount`, in nanoseconds.
    var timeAmount: TimeAmountNanoseconds {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}

typealias TimeAmountNanoseconds = Int64
