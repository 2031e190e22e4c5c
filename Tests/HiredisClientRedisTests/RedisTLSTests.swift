import ChannelsTestSupport
import Foundation
import HiredisClient
import Testing

/// `rediss://` against a real `redis-server --tls-port` with a throwaway CA: commands and pub/sub work, and
/// every way verification can fail is a typed error that names the cause and the fix.
@Suite struct RedisTLSTests {
    static func configuration(_ url: String) throws -> RedisConfiguration {
        var configuration = try RedisConfiguration(url: url)
        configuration.connectTimeout = .seconds(3)
        configuration.commandTimeout = .seconds(5)
        return configuration
    }

    static func expectFailure(
        _ url: String,
        code: RedisError.Code,
        saying parts: [String],
        sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
        let configuration = try configuration(url)
        do {
            let connection = try await RedisConnection.connect(configuration: configuration)
            await connection.close()
            Issue.record("connecting to \(url) succeeded", sourceLocation: sourceLocation)
        } catch {
            #expect(error.code == code, "\(error)", sourceLocation: sourceLocation)
            for part in parts {
                #expect(error.message.contains(part), "\(error.message) lacks '\(part)'", sourceLocation: sourceLocation)
            }
        }
    }

    @Test func commandsAndPubSubOverTLS() async throws {
        let fixture = try RedisTLSFixture.make()
        let (server, tlsPort) = try await fixture.startServer()
        // By IP (checked against the certificate's IP entry) and by name (SNI and DNS entry).
        for host in ["127.0.0.1", "localhost"] {
            let client = RedisClient(configuration: try Self.configuration("rediss://\(host):\(tlsPort)?ca=\(fixture.caFile)"))
            #expect(try await client.send("SET", "tls-key", .string(host)) == .status("OK"))
            #expect(try await client.send("GET", "tls-key") == .bulkString(Array(host.utf8)))
            await client.close()
        }
        // The same data through the plain port: it was one server all along.
        let plain = try await RedisConnection.connect(configuration: server.configuration())
        #expect(try await plain.send("GET", "tls-key") == .bulkString(Array("localhost".utf8)))
        await plain.close()

        let configuration = try Self.configuration("rediss://localhost:\(tlsPort)?ca=\(fixture.caFile)")
        let subscriber = RedisSubscriber(
            configuration: configuration,
            reconnectPolicy: RedisReconnectPolicy(initialDelay: .milliseconds(50), maximumDelay: .milliseconds(200))
        )
        let runner = Task { try await subscriber.run() }
        defer { runner.cancel() }
        var events = subscriber.events.makeAsyncIterator()
        try await subscriber.subscribe(["over-tls"])
        #expect(await events.next() == .connected)
        let publisher = RedisClient(configuration: configuration)
        #expect(try await publisher.send("PUBLISH", "over-tls", "hello") == .integer(1))
        var messages = subscriber.messages.makeAsyncIterator()
        #expect(await messages.next() == RedisPubSubMessage(channel: "over-tls", payload: Array("hello".utf8)))

        // A restart: the subscriber reconnects over TLS and subscribes again.
        server.kill()
        guard case .connectionLost = await events.next() else {
            Issue.record("expected connectionLost")
            return
        }
        try await server.restart()
        var next = await events.next()
        while case .connectFailed = next { next = await events.next() }
        #expect(next == .resubscribed(channels: 1, patterns: 0))
        let delivered = await eventually { (try? await publisher.send("PUBLISH", "over-tls", "again")) == .integer(1) }
        #expect(delivered)
        #expect(await messages.next() == RedisPubSubMessage(channel: "over-tls", payload: Array("again".utf8)))
        await publisher.close()
    }

    @Test func aWrongCAFailsAndSaysWhichCAToGive() async throws {
        let fixture = try RedisTLSFixture.make()
        let (server, tlsPort) = try await fixture.startServer()
        defer { withExtendedLifetime(server) {} }
        try await Self.expectFailure(
            "rediss://127.0.0.1:\(tlsPort)?ca=\(fixture.otherCAFile)",
            code: .tlsHandshakeFailed,
            saying: ["127.0.0.1:\(tlsPort)", "is not signed by the CA in '\(fixture.otherCAFile)'", "?ca="]
        )
        // Without ca= the system's roots are used, which do not include a throwaway CA either.
        try await Self.expectFailure(
            "rediss://127.0.0.1:\(tlsPort)",
            code: .tlsHandshakeFailed,
            saying: ["is not signed by the system's trusted CAs"]
        )
        let error = RedisError(.tlsHandshakeFailed, "")
        #expect(!error.isRetryable)
    }

    @Test func aHostNameMismatchFailsAndNamesTheName() async throws {
        let fixture = try RedisTLSFixture.make()
        let (server, tlsPort) = try await fixture.startServer()
        defer { withExtendedLifetime(server) {} }
        try await Self.expectFailure(
            "rediss://127.0.0.1:\(tlsPort)?ca=\(fixture.caFile)&servername=wrong.example",
            code: .tlsHandshakeFailed,
            saying: ["not valid for 'wrong.example'", "servername="]
        )
        // The right name given explicitly works while connecting by IP.
        let connection = try await RedisConnection.connect(
            configuration: try Self.configuration("rediss://127.0.0.1:\(tlsPort)?ca=\(fixture.caFile)&servername=localhost")
        )
        #expect(try await connection.send("PING") == .status("PONG"))
        await connection.close()
    }

    @Test func clientCertificates() async throws {
        let fixture = try RedisTLSFixture.make()
        let (server, tlsPort) = try await fixture.startServer(requireClientCertificate: true)
        defer { withExtendedLifetime(server) {} }
        let base = "rediss://localhost:\(tlsPort)?ca=\(fixture.caFile)"
        try await Self.expectFailure(base, code: .tlsHandshakeFailed, saying: ["refused the TLS handshake", "cert=", "key="])

        let connection = try await RedisConnection.connect(
            configuration: try Self.configuration("\(base)&cert=\(fixture.clientCertificateFile)&key=\(fixture.clientKeyFile)")
        )
        #expect(try await connection.send("PING") == .status("PONG"))
        await connection.close()

        // A key that is not the certificate's.
        try await Self.expectFailure(
            "\(base)&cert=\(fixture.clientCertificateFile)&key=\(fixture.serverKeyFile)",
            code: .tlsConfigurationInvalid,
            saying: ["does not belong to the certificate", fixture.serverKeyFile]
        )
    }

    @Test func unreadableOrMalformedFilesFailBeforeConnecting() async throws {
        let fixture = try RedisTLSFixture.make()
        // Nothing listens on this port: the file errors must come first.
        let port = try freePort()
        try await Self.expectFailure(
            "rediss://127.0.0.1:\(port)?ca=/nonexistent/ca.pem",
            code: .tlsConfigurationInvalid,
            saying: ["cannot read the CA file (ca=) '/nonexistent/ca.pem'", "No such file"]
        )
        let garbage = fixture.directory.appendingPathComponent("garbage.pem")
        try "not a certificate\n".write(to: garbage, atomically: true, encoding: .utf8)
        try await Self.expectFailure(
            "rediss://127.0.0.1:\(port)?ca=\(garbage.path)",
            code: .tlsConfigurationInvalid,
            saying: ["'\(garbage.path)'", "PEM"]
        )
        try await Self.expectFailure(
            "rediss://127.0.0.1:\(port)?ca=\(fixture.caFile)&cert=\(fixture.clientCertificateFile)&key=/nonexistent/client.key",
            code: .tlsConfigurationInvalid,
            saying: ["cannot read the client key (key=) '/nonexistent/client.key'"]
        )
        try await Self.expectFailure(
            "rediss://127.0.0.1:\(port)?ca=\(fixture.caFile)&cert=\(garbage.path)&key=\(fixture.clientKeyFile)",
            code: .tlsConfigurationInvalid,
            saying: ["client certificate (cert=)", "PEM"]
        )
    }

    @Test func tlsToAPlainPortSaysSo() async throws {
        let fixture = try RedisTLSFixture.make()
        // A plain port that answers at once: Redis at maxclients sends "-ERR max number of clients reached".
        let full = try await RedisServer.start(arguments: ["--maxclients", "1"])
        let holder = try await RedisConnection.connect(configuration: full.configuration())
        try await Self.expectFailure(
            "rediss://127.0.0.1:\(full.port)?ca=\(fixture.caFile)",
            code: .tlsHandshakeFailed,
            saying: ["did not answer in TLS", "tls-port", "redis://"]
        )
        await holder.close()

        // A plain port that waits: Redis takes the ClientHello for the start of an inline command and waits for
        // its end (a newline among the hello's random bytes makes it answer an error instead).
        let (server, _) = try await fixture.startServer()
        var configuration = try Self.configuration("rediss://127.0.0.1:\(server.port)?ca=\(fixture.caFile)")
        configuration.connectTimeout = .milliseconds(500)
        await #expect {
            _ = try await RedisConnection.connect(configuration: configuration)
        } throws: { error in
            guard let error = error as? RedisError else { return false }
            return [.timeout, .tlsHandshakeFailed].contains(error.code) && error.message.contains("tls-port")
                && error.message.contains("redis://")
        }
    }

    @Test func aCertificateWithoutTheAddressFailsWhenConnectingByIP() async throws {
        let fixture = try RedisTLSFixture.make()
        let (server, tlsPort) = try await fixture.startServer(certificate: .namesOnly)
        defer { withExtendedLifetime(server) {} }
        // NIOSSL's own check: no IP entry for 127.0.0.1 and no name to match.
        try await Self.expectFailure(
            "rediss://127.0.0.1:\(tlsPort)?ca=\(fixture.caFile)",
            code: .tlsHandshakeFailed,
            saying: ["is not valid for '127.0.0.1'", "servername="]
        )
        let connection = try await RedisConnection.connect(configuration: try Self.configuration("rediss://localhost:\(tlsPort)?ca=\(fixture.caFile)"))
        #expect(try await connection.send("PING") == .status("PONG"))
        await connection.close()
    }

    @Test func tlsOverAUnixSocketIsRefused() async throws {
        let server = try await RedisServer.start()
        var configuration = RedisConfiguration(address: .unixSocket(path: server.socketPath))
        configuration.tls = RedisConfiguration.TLS()
        await #expect {
            _ = try await RedisConnection.connect(configuration: configuration)
        } throws: { error in
            guard let error = error as? RedisError else { return false }
            return error.code == .unsupported && error.message.contains("TLS over a Unix socket")
        }
    }

    @Test func aTLSServerThatNeverAnswersTimesOut() async throws {
        let fixture = try RedisTLSFixture.make()
        let (server, tlsPort) = try await fixture.startServer()
        server.pause()
        defer { server.resume() }
        var configuration = try Self.configuration("rediss://127.0.0.1:\(tlsPort)?ca=\(fixture.caFile)")
        configuration.connectTimeout = .milliseconds(500)
        let started = ContinuousClock.now
        await #expect {
            _ = try await RedisConnection.connect(configuration: configuration)
        } throws: { error in
            guard let error = error as? RedisError else { return false }
            return error.code == .timeout && error.message.contains("TLS handshake")
        }
        #expect(ContinuousClock.now - started < .seconds(3))
    }
}
