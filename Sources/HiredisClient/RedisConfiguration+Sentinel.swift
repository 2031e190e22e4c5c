extension RedisConfiguration {
    /// A master found through Redis Sentinel instead of a fixed address.
    ///
    /// Used as ``RedisConfiguration/Address/sentinel(_:)``. Every connection attempt (the first and every
    /// reconnect of ``RedisClient`` and ``RedisSubscriber``) asks the sentinels, in order, for the master's
    /// address, connects there and checks with `ROLE` that the server is a master, so a failover is followed by
    /// reconnecting. While a connection lives, it also listens to `+switch-master` on a sentinel and closes
    /// itself when the master moves, and a `READONLY` reply (the master was demoted) closes it too.
    ///
    /// The URL's user and password (and `db`, TLS settings) apply to the master; the sentinels get
    /// ``username`` and ``password`` here (`sentinel_username=`, `sentinel_password=` in the URL), and the same
    /// TLS settings as the master.
    public struct Sentinel: Sendable, Hashable, CustomStringConvertible {
        /// A sentinel's host and port.
        public struct Endpoint: Sendable, Hashable, CustomStringConvertible {
            /// A host name or IP address.
            public var host: String
            /// The sentinel's TCP port (26379 unless configured otherwise).
            public var port: Int

            /// Creates an endpoint.
            public init(host: String, port: Int = 26379) {
                self.host = host
                self.port = port
            }

            public var description: String { Address.tcp(host: host, port: port).description }
        }

        /// The sentinels, asked in this order; the first that names the master wins.
        public var endpoints: [Endpoint]
        /// The master's name as the sentinels know it (`sentinel monitor NAME ...`).
        public var masterName: String
        /// The ACL user for the sentinels, if they have one.
        public var username: String?
        /// The sentinels' password (`requirepass` in sentinel.conf), if any; not the master's.
        public var password: String?

        /// Creates a sentinel setting.
        public init(endpoints: [Endpoint], masterName: String, username: String? = nil, password: String? = nil) {
            self.endpoints = endpoints
            self.masterName = masterName
            self.username = username
            self.password = password
        }

        public var description: String {
            "master '\(masterName)' via sentinels \(endpoints.map(\.description).joined(separator: ","))"
        }
    }
}
