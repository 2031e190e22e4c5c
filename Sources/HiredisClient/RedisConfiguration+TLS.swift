extension RedisConfiguration {
    /// TLS to Redis (`rediss://`), done by swift-nio-ssl under the RESP reader: hiredis never sees it.
    ///
    /// Verification is always full: the server's certificate must chain to ``caFile`` (or, without one, to the
    /// system's trust store) and name the host connected to, or ``serverName``. There is no switch to turn
    /// verification off; make a CA for test servers instead (`openssl req -x509 ...`).
    ///
    /// Files are read at every connection attempt, so renewed certificates are picked up on reconnect.
    public struct TLS: Sendable, Hashable {
        /// A PEM file of the CA certificates trusted to sign the server's certificate (`ca=`);
        /// `nil` trusts the system's roots, as managed Redis services with public certificates need.
        public var caFile: String?
        /// A PEM file with the client certificate (and chain) for servers that require one (`cert=`).
        public var certificateFile: String?
        /// The PEM private key of ``certificateFile`` (`key=`).
        public var keyFile: String?
        /// The name the server's certificate must carry and that is sent as SNI (`servername=`);
        /// `nil` uses the host of the address connected to. An IP address is checked against the
        /// certificate's IP entries and is never sent as SNI.
        public var serverName: String?

        /// Creates TLS settings; the defaults verify against the system's roots.
        public init(caFile: String? = nil, certificateFile: String? = nil, keyFile: String? = nil, serverName: String? = nil) {
            self.caFile = caFile
            self.certificateFile = certificateFile
            self.keyFile = keyFile
            self.serverName = serverName
        }
    }
}
