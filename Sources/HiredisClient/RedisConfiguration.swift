/// Where and how to connect to Redis.
///
/// Usually made from a URL:
/// - `redis://[[user]:password@]host[:port][/db]`, e.g. `redis://:s3cret@127.0.0.1:6380/2`
/// - `rediss://...` the same over TLS, with `?ca=PATH`, `cert=PATH&key=PATH`, `servername=NAME` (see ``TLS``)
/// - `unix:///path/to/redis.sock[?db=N&password=P&username=U]`
/// - `redis-sentinel://[[user]:password@]HOST[:PORT][,HOST[:PORT]...]/MASTER_NAME[/db]` (see ``Sentinel``),
///   and `rediss-sentinel://...` for TLS to the sentinels and the master
public struct RedisConfiguration: Sendable, Hashable {
    /// A TCP host and port, a Unix domain socket path, or a master found through sentinels.
    public enum Address: Sendable, Hashable, CustomStringConvertible {
        case tcp(host: String, port: Int)
        case unixSocket(path: String)
        /// The master the sentinels name at each connection attempt.
        case sentinel(Sentinel)

        public var description: String {
            switch self {
            case .tcp(let host, let port): host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
            case .unixSocket(let path): "unix://\(path)"
            case .sentinel(let sentinel): sentinel.description
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
    /// TLS settings; `nil` connects in plain text. Applies to TCP addresses and to sentinels and their master.
    public var tls: TLS?

    /// Creates a configuration.
    public init(
        address: Address = .tcp(host: "127.0.0.1", port: 6379),
        username: String? = nil,
        password: String? = nil,
        database: Int = 0,
        connectTimeout: Duration = .seconds(5),
        commandTimeout: Duration? = .seconds(10),
        clientName: String? = nil,
        tls: TLS? = nil
    ) {
        self.address = address
        self.username = username
        self.password = password
        self.database = database
        self.connectTimeout = connectTimeout
        self.commandTimeout = commandTimeout
        self.clientName = clientName
        self.tls = tls
    }

    /// Parses a `redis://`, `rediss://`, `unix://`, `redis-sentinel://` or `rediss-sentinel://` URL.
    /// - Throws: ``RedisError`` with code ``RedisError/Code/invalidURL`` saying what is wrong.
    public init(url: String) throws(RedisError) {
        self.init()
        func invalid(_ why: String) -> RedisError {
            RedisError(
                .invalidURL,
                "invalid Redis URL '\(Self.redact(url))': \(why); expected redis[s]://[[user]:password@]host[:port][/db], unix:///path/to/socket or redis[s]-sentinel://[[user]:password@]host:port[,host:port...]/master_name[/db]"
            )
        }
        guard let schemeEnd = url.firstRange(of: "://") else { throw invalid("no scheme") }
        let scheme = url[..<schemeEnd.lowerBound].lowercased()
        var rest = Substring(url[schemeEnd.upperBound...])

        var query: [(key: String, value: String)] = []
        if let questionMark = rest.firstIndex(of: "?") {
            for pair in rest[rest.index(after: questionMark)...].split(separator: "&") {
                let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                guard let key = parts.first, let value = Self.percentDecode(parts.count > 1 ? parts[1] : "") else {
                    throw invalid("bad query parameter '\(Self.redactQueryPair(pair))'")
                }
                query.append((String(key), value))
            }
            rest = rest[..<questionMark]
        }

        switch scheme {
        case "redis", "rediss":
            if scheme == "rediss" { tls = TLS() }
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
            let (host, port) = try Self.parseHostPort(authority, defaultPort: 6379, invalid: invalid)
            address = .tcp(host: host, port: port)
        case "redis-sentinel", "rediss-sentinel":
            if scheme == "rediss-sentinel" { tls = TLS() }
            try parseSentinel(rest, invalid: invalid)
        case "unix":
            // unix://[user:password@]/path
            if let at = rest.lastIndex(of: "@"), !rest[..<at].contains("/") {
                try parseUserInfo(rest[..<at], invalid: invalid)
                rest = rest[rest.index(after: at)...]
            }
            guard rest.hasPrefix("/"), rest.count > 1 else { throw invalid("a unix socket URL needs an absolute path") }
            address = .unixSocket(path: String(rest))
        default:
            throw invalid("unknown scheme '\(scheme)'")
        }
        try applyQuery(query, invalid: invalid)
    }

    /// `[user:password@]host[:port][,host[:port]...]/master_name[/db]` after `redis-sentinel://`.
    private mutating func parseSentinel(_ rest: Substring, invalid: (String) -> RedisError) throws(RedisError) {
        guard let slash = rest.firstIndex(of: "/") else {
            throw invalid("a sentinel URL needs the master's name after the sentinel addresses, as in redis-sentinel://127.0.0.1:26379/mymaster")
        }
        var authority = rest[..<slash]
        let path = rest[rest.index(after: slash)...].split(separator: "/", omittingEmptySubsequences: false)
        guard let rawName = path.first, !rawName.isEmpty, let masterName = Self.percentDecode(rawName) else {
            throw invalid("a sentinel URL needs the master's name after the sentinel addresses, as in redis-sentinel://127.0.0.1:26379/mymaster")
        }
        if path.count > 2 { throw invalid("unexpected '/\(path[2...].joined(separator: "/"))' after the database") }
        if path.count == 2, !path[1].isEmpty {
            guard let db = Int(path[1]), db >= 0 else { throw invalid("database '\(path[1])' is not a non-negative integer") }
            database = db
        }
        if let at = authority.lastIndex(of: "@") {
            try parseUserInfo(authority[..<at], invalid: invalid)
            authority = authority[authority.index(after: at)...]
        }
        guard !authority.isEmpty else { throw invalid("a sentinel URL needs at least one sentinel host:port") }
        var endpoints: [Sentinel.Endpoint] = []
        for entry in authority.split(separator: ",", omittingEmptySubsequences: false) {
            guard !entry.isEmpty else { throw invalid("empty sentinel address in '\(authority)'") }
            let (host, port) = try Self.parseHostPort(entry, defaultPort: 26379, invalid: invalid)
            endpoints.append(Sentinel.Endpoint(host: host, port: port))
        }
        address = .sentinel(Sentinel(endpoints: endpoints, masterName: masterName))
    }

    /// `host`, `host:port`, `[v6]:port` or `:port`; the host defaults to 127.0.0.1.
    private static func parseHostPort(
        _ authority: Substring,
        defaultPort: Int,
        invalid: (String) -> RedisError
    ) throws(RedisError) -> (host: String, port: Int) {
        var host = "127.0.0.1"
        var port = defaultPort
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
        return (host, port)
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

    private mutating func applyQuery(_ query: [(key: String, value: String)], invalid: (String) -> RedisError) throws(RedisError) {
        for (key, value) in query {
            switch key {
            case "db":
                guard let db = Int(value), db >= 0 else { throw invalid("db '\(value)' is not a non-negative integer") }
                database = db
            case "password": password = value
            case "username": username = value.isEmpty ? nil : value
            case "name": clientName = value
            case "ca", "cert", "key", "servername":
                guard var settings = tls else {
                    throw invalid("'\(key)' is a TLS setting: use rediss:// (or rediss-sentinel://) to connect with TLS")
                }
                guard !value.isEmpty else { throw invalid("'\(key)=' needs a value") }
                switch key {
                case "ca": settings.caFile = value
                case "cert": settings.certificateFile = value
                case "key": settings.keyFile = value
                default: settings.serverName = value
                }
                tls = settings
            case "sentinel_password", "sentinel_username":
                guard case .sentinel(var sentinel) = address else {
                    throw invalid("'\(key)' applies to sentinels: use redis-sentinel://")
                }
                if key == "sentinel_password" {
                    sentinel.password = value
                } else {
                    sentinel.username = value.isEmpty ? nil : value
                }
                address = .sentinel(sentinel)
            default: throw invalid("unknown query parameter '\(key)'")
            }
        }
        if let tls, (tls.certificateFile == nil) != (tls.keyFile == nil) {
            throw invalid("'cert' and 'key' go together: give both for a client certificate, or neither")
        }
    }

    /// The URL with the password replaced by `***`, for logs and error messages.
    ///
    /// TLS file paths are left out; the sentinels' password is never shown.
    public var redactedDescription: String {
        var userInfo = ""
        if let password, !password.isEmpty {
            userInfo = "\(username ?? ""):***@"
        } else if let username {
            userInfo = "\(username)@"
        }
        let secure = tls != nil ? "s" : ""
        switch address {
        case .tcp:
            return "redis\(secure)://\(userInfo)\(address)" + (database != 0 ? "/\(database)" : "")
        case .unixSocket(let path):
            return "unix://\(userInfo)\(path)" + (database != 0 ? "?db=\(database)" : "")
        case .sentinel(let sentinel):
            let hosts = sentinel.endpoints.map(\.description).joined(separator: ",")
            return "redis\(secure)-sentinel://\(userInfo)\(hosts)/\(sentinel.masterName)" + (database != 0 ? "/\(database)" : "")
        }
    }

    static func redact(_ url: String) -> String {
        var url = Substring(url)
        var query: Substring = ""
        if let questionMark = url.firstIndex(of: "?") {
            query = "?" + url[url.index(after: questionMark)...].split(separator: "&", omittingEmptySubsequences: false)
                .map(redactQueryPair).joined(separator: "&")
            url = url[..<questionMark]
        }
        guard let schemeEnd = url.firstRange(of: "://"), let at = url.lastIndex(of: "@"), at > schemeEnd.upperBound else {
            return String(url + query)
        }
        let userInfo = url[schemeEnd.upperBound..<at]
        guard let colon = userInfo.firstIndex(of: ":") else { return url[..<schemeEnd.upperBound] + "***" + url[at...] + query }
        return url[..<colon] + ":***" + url[at...] + query
    }

    /// `password=...` and `sentinel_password=...` with the value replaced by `***`.
    static func redactQueryPair(_ pair: Substring) -> String {
        for key in ["password=", "sentinel_password="] where pair.hasPrefix(key) {
            return key + "***"
        }
        return String(pair)
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
