import NIOCore
import NIOPosix
import NIOSSL
import SwiftASN1
import X509

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Builds the TLS context of a `rediss://` configuration and turns swift-nio-ssl's errors into
/// ``RedisError``s that name the cause and the fix.
enum RedisTLS {
    /// The client context for `settings`, built on NIO's thread pool: it reads files (the CA, the client
    /// certificate and key, or the system's trust store), which must not happen on an event loop or in the
    /// cooperative pool.
    static func makeContext(_ settings: RedisConfiguration.TLS) async throws(RedisError) -> NIOSSLContext {
        let result: Result<NIOSSLContext, RedisError>
        do {
            result = try await NIOThreadPool.singleton.runIfActive { () -> Result<NIOSSLContext, RedisError> in
                do throws(RedisError) {
                    return .success(try makeContextBlocking(settings))
                } catch {
                    return .failure(error)
                }
            }
        } catch {
            result = .failure(RedisError(.tlsConfigurationInvalid, "could not prepare TLS: NIO's thread pool is not running (\(error))"))
        }
        return try result.get()
    }

    /// Reads the files and makes the context; blocks on file I/O.
    static func makeContextBlocking(_ settings: RedisConfiguration.TLS) throws(RedisError) -> NIOSSLContext {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.certificateVerification = .fullVerification
        configuration.minimumTLSVersion = .tlsv12
        if let caFile = settings.caFile {
            let certificates = try loadCertificates(caFile, what: "CA file (ca=)")
            configuration.trustRoots = .certificates(certificates)
        }
        if let certificateFile = settings.certificateFile, let keyFile = settings.keyFile {
            let chain = try loadCertificates(certificateFile, what: "client certificate (cert=)")
            try checkReadable(keyFile, what: "client key (key=)")
            let key: NIOSSLPrivateKey
            do {
                key = try NIOSSLPrivateKey(file: keyFile, format: .pem)
            } catch {
                throw RedisError(
                    .tlsConfigurationInvalid,
                    "the client key (key=) '\(keyFile)' is not a PEM private key (\(error)); give the key of the certificate in cert= in PEM form"
                )
            }
            configuration.certificateChain = chain.map { .certificate($0) }
            configuration.privateKey = .privateKey(key)
        }
        do {
            return try NIOSSLContext(configuration: configuration)
        } catch NIOSSLError.failedToLoadPrivateKey {
            throw RedisError(
                .tlsConfigurationInvalid,
                "the client key (key=) '\(settings.keyFile ?? "")' does not belong to the certificate (cert=) '\(settings.certificateFile ?? "")'; give the key the certificate was made for"
            )
        } catch {
            throw RedisError(.tlsConfigurationInvalid, "could not set up TLS from the URL's ca=, cert= and key= files: \(error)")
        }
    }

    /// The name sent as SNI and checked against the certificate: `serverName`, else the host; `nil` for an IP
    /// address, which NIOSSL then checks against the certificate's IP entries for the peer's address.
    static func serverHostname(_ settings: RedisConfiguration.TLS, host: String) -> String? {
        let name = settings.serverName ?? host
        if (try? SocketAddress(ipAddress: name, port: 0)) != nil { return nil }
        return name
    }

    /// Whether `certificate` names `hostname` among its DNS names (or, without any subject alternative
    /// names, in its common name), with a `*.` wildcard standing for one leftmost label.
    ///
    /// NIOSSL's own check also accepts a certificate whose IP entry matches the address connected to, whatever
    /// the name; this one, run after it, makes `servername=` (and a host name in the URL) mean what it says.
    /// Returns the names found alongside, for the error message.
    static func certificate(_ certificate: NIOSSLCertificate, names hostname: String) -> (matches: Bool, names: [String]) {
        let parsed: Certificate
        do {
            parsed = try Certificate(derEncoded: try certificate.toDERBytes())
        } catch {
            return (false, [])
        }
        var names: [String] = []
        let alternativeNames = (try? parsed.extensions.subjectAlternativeNames) ?? nil
        if let alternativeNames {
            for name in alternativeNames {
                if case .dnsName(let dnsName) = name { names.append(dnsName) }
            }
        } else {
            for attribute in parsed.subject.flatMap({ $0 }) where attribute.type == .RDNAttributeType.commonName {
                names.append(attribute.value.description)
            }
        }
        let wanted = normalized(hostname)
        let matches = names.contains { name in
            let pattern = normalized(name)
            if pattern == wanted { return true }
            guard pattern.hasPrefix("*."), let dot = wanted.firstIndex(of: "."), dot != wanted.startIndex else { return false }
            return pattern.dropFirst(2) == wanted[wanted.index(after: dot)...]
        }
        return (matches, names)
    }

    private static func normalized(_ name: String) -> String {
        var name = name.lowercased()
        while name.hasSuffix(".") { name.removeLast() }
        return name
    }

    /// The name the certificate must carry, for messages.
    static func expectedName(_ settings: RedisConfiguration.TLS, host: String) -> String {
        settings.serverName ?? host
    }

    /// A swift-nio-ssl error as a ``RedisError``; `nil` for errors that are not TLS's.
    ///
    /// Definite verdicts (an untrusted or misnamed certificate, an alert from the server, a port that does not
    /// speak TLS) become ``RedisError/Code/tlsHandshakeFailed``, which retrying cannot fix; a connection that
    /// merely ended during the handshake stays ``RedisError/Code/connectionClosed``.
    static func mapError(
        _ error: any Error,
        address: String,
        settings: RedisConfiguration.TLS,
        host: String,
        duringHandshake: Bool
    ) -> RedisError? {
        let text = String(describing: error)
        let name = expectedName(settings, host: host)
        if let extra = error as? NIOSSLExtraError {
            if extra == .failedToValidateHostname {
                return RedisError(
                    .tlsHandshakeFailed,
                    "the TLS certificate of Redis at \(address) is not valid for '\(name)' (\(text)); connect by a name the certificate lists, or set servername= to one of them"
                )
            }
            return RedisError(.tlsHandshakeFailed, "TLS with Redis at \(address) failed: \(text)")
        }
        let isTLSError = error is NIOSSLError || error is BoringSSLError
        guard isTLSError else { return nil }
        if text.contains("CERTIFICATE_VERIFY_FAILED") {
            let trusted = settings.caFile.map { "the CA in '\($0)' (ca=)" } ?? "the system's trusted CAs"
            return RedisError(
                .tlsHandshakeFailed,
                "the TLS certificate of Redis at \(address) is not signed by \(trusted), or has expired; give the CA that issued the server's certificate with ?ca=/path/to/ca.pem"
            )
        }
        if text.contains("CERTIFICATE_REQUIRED") || text.contains("HANDSHAKE_FAILURE") || text.contains("BAD_CERTIFICATE")
            || text.contains("UNKNOWN_CA") || text.contains("CERTIFICATE_UNKNOWN")
        {
            let hint =
                settings.certificateFile == nil
                ? "the server probably requires a client certificate: add cert=/path/client.pem&key=/path/client.key"
                : "the server did not accept the client certificate in '\(settings.certificateFile ?? "")' (cert=): it must be signed by a CA in the server's tls-ca-cert-file"
            return RedisError(.tlsHandshakeFailed, "Redis at \(address) refused the TLS handshake (\(alertName(text))): \(hint)")
        }
        if text.contains("WRONG_VERSION_NUMBER") || text.contains("PACKET_LENGTH_TOO_LONG") || text.contains("HTTP_REQUEST")
            || text.contains("RECORD_TOO_LARGE")
        {
            return RedisError(
                .tlsHandshakeFailed,
                "Redis at \(address) did not answer in TLS: is that its tls-port? Use redis:// (not rediss://) for a plain port"
            )
        }
        var closed = text.contains("EOF during handshake")
        if case NIOSSLError.uncleanShutdown = error { closed = true }
        if closed {
            return RedisError(
                .connectionClosed,
                duringHandshake
                    ? "Redis at \(address) closed the connection during the TLS handshake: is that its tls-port, and does it require a client certificate (cert=, key=)?"
                    : "the TLS connection to Redis at \(address) ended without a TLS close_notify: the server went away or the network cut the connection"
            )
        }
        // Anything else is not known to be a verdict about the settings: report it, and let the caller retry.
        return RedisError(.connectionFailed, "TLS with Redis at \(address) failed: \(text)")
    }

    /// The short reason from BoringSSL's error text, e.g. `TLSV13_ALERT_CERTIFICATE_REQUIRED`.
    private static func alertName(_ text: String) -> String {
        for word in text.split(whereSeparator: { !($0.isLetter || $0.isNumber || $0 == "_") })
        where word.contains("ALERT") || word.hasSuffix("FAILURE") || word.hasSuffix("CERTIFICATE") {
            return String(word)
        }
        return "alert"
    }

    private static func checkReadable(_ path: String, what: String) throws(RedisError) {
        if access(path, R_OK) != 0 {
            let reason = String(cString: strerror(errno))
            throw RedisError(
                .tlsConfigurationInvalid,
                "cannot read the \(what) '\(path)': \(reason); give the path of a PEM file this process may read"
            )
        }
    }

    private static func loadCertificates(_ path: String, what: String) throws(RedisError) -> [NIOSSLCertificate] {
        try checkReadable(path, what: what)
        let certificates: [NIOSSLCertificate]
        do {
            certificates = try NIOSSLCertificate.fromPEMFile(path)
        } catch {
            throw RedisError(.tlsConfigurationInvalid, "the \(what) '\(path)' is not a PEM certificate file (\(error)); give certificates in PEM form (-----BEGIN CERTIFICATE-----)")
        }
        guard !certificates.isEmpty else {
            throw RedisError(.tlsConfigurationInvalid, "the \(what) '\(path)' holds no certificate; give certificates in PEM form (-----BEGIN CERTIFICATE-----)")
        }
        return certificates
    }
}
