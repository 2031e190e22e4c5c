import Foundation

/// A throwaway CA, a server certificate for `localhost` and `127.0.0.1`, a client certificate and a second,
/// unrelated CA, made with the `openssl` command in a temporary folder, for TLS tests against a real
/// `redis-server --tls-port`.
public final class RedisTLSFixture: Sendable {
    /// The folder holding every file; removed when the fixture goes away.
    public let directory: URL

    /// The CA that signed the server and client certificates.
    public var caFile: String { path("ca.pem") }
    /// A CA that signed nothing here: trusting it must fail verification.
    public var otherCAFile: String { path("other-ca.pem") }
    /// The server's certificate (names `localhost` and `127.0.0.1`) and key.
    public var serverCertificateFile: String { path("server.pem") }
    public var serverKeyFile: String { path("server.key") }
    /// A server certificate that names `localhost` only, no IP address (key: ``serverKeyFile``).
    public var namesOnlyCertificateFile: String { path("names-only.pem") }

    /// Which server certificate a test server presents.
    public enum ServerCertificate: Sendable {
        /// DNS `localhost` and IP `127.0.0.1`.
        case namesAndAddress
        /// DNS `localhost` only.
        case namesOnly
    }
    /// A client certificate (clientAuth) signed by ``caFile``, and its key.
    public var clientCertificateFile: String { path("client.pem") }
    public var clientKeyFile: String { path("client.key") }

    private init(directory: URL) {
        self.directory = directory
    }

    /// Makes the CA and certificates (EC P-256, valid for two days).
    public static func make() throws -> RedisTLSFixture {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("swift-channels-tls-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let fixture = RedisTLSFixture(directory: directory)
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        try fixture.openssl(["req", "-x509"] + ec + ["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=swift-channels test CA"])
        try fixture.openssl(["req", "-x509"] + ec + ["-keyout", "other-ca.key", "-out", "other-ca.pem", "-days", "2", "-subj", "/CN=another CA"])
        for (name, extensions) in [
            ("server", "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"),
            ("client", "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n"),
        ] {
            try fixture.openssl(["req"] + ec + ["-keyout", "\(name).key", "-out", "\(name).csr", "-subj", "/CN=\(name == "server" ? "localhost" : "swift-channels client")"])
            try extensions.write(to: directory.appendingPathComponent("\(name).ext"), atomically: true, encoding: .utf8)
            try fixture.openssl([
                "x509", "-req", "-in", "\(name).csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", "\(name).pem", "-days", "2", "-extfile", "\(name).ext",
            ])
        }
        try "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
            .write(to: directory.appendingPathComponent("names-only.ext"), atomically: true, encoding: .utf8)
        try fixture.openssl([
            "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "names-only.pem", "-days", "2", "-extfile", "names-only.ext",
        ])
        return fixture
    }

    /// `redis-server` options for a TLS port next to the plain one (which the harness uses to see it is up).
    /// - Parameter requireClientCertificate: `--tls-auth-clients yes` instead of `no`.
    public func serverArguments(
        tlsPort: Int,
        requireClientCertificate: Bool = false,
        certificate: ServerCertificate = .namesAndAddress
    ) -> [String] {
        [
            "--tls-port", String(tlsPort),
            "--tls-cert-file", certificate == .namesOnly ? namesOnlyCertificateFile : serverCertificateFile,
            "--tls-key-file", serverKeyFile,
            "--tls-ca-cert-file", caFile, "--tls-auth-clients", requireClientCertificate ? "yes" : "no",
        ]
    }

    /// Starts a `redis-server` with a TLS port; returns it and the TLS port.
    public func startServer(
        requireClientCertificate: Bool = false,
        certificate: ServerCertificate = .namesAndAddress
    ) async throws -> (server: RedisServer, tlsPort: Int) {
        var lastError: (any Error)?
        for _ in 0..<3 {
            let tlsPort = try freePort()
            do {
                let server = try await RedisServer.start(
                    arguments: serverArguments(tlsPort: tlsPort, requireClientCertificate: requireClientCertificate, certificate: certificate)
                )
                return (server, tlsPort)
            } catch {
                lastError = error
            }
        }
        throw lastError ?? TestSupportError("could not start a TLS redis-server")
    }

    private func path(_ name: String) -> String {
        directory.appendingPathComponent(name).path
    }

    private func openssl(_ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try RedisServer.findExecutable("openssl"))
        process.arguments = arguments
        process.currentDirectoryURL = directory
        process.standardOutput = FileHandle.nullDevice
        let errors = try ChildProcesses.launch {
            let errors = Pipe()
            process.standardError = errors
            try process.run()
            return errors
        }
        let output = errors.fileHandleForReading.readDataToEndOfFile()
        // End of file came: the process is ending. Bounded rather than `waitUntilExit()` (see ChildProcesses).
        guard ChildProcesses.waitUntilNotRunning(process, timeout: .seconds(30)), process.terminationStatus == 0 else {
            throw TestSupportError("openssl \(arguments.joined(separator: " ")) failed: \(String(decoding: output, as: UTF8.self))")
        }
    }

    deinit {
        try? FileManager.default.removeItem(at: directory)
    }
}
