import ChannelsTestSupport
import Foundation
import Testing

/// `channels-node --redis rediss://...` end to end against `redis-server --tls-port`: chat crosses two nodes
/// over TLS, and a CA that did not sign the server's certificate is one clear line and exit 1.
@Suite(.serialized) struct RedisTLSNodeTests {
    @Test func twoNodesShareARoomOverTLS() async throws {
        let fixture = try RedisTLSFixture.make()
        let (server, tlsPort) = try await fixture.startServer(requireClientCertificate: true)
        defer { withExtendedLifetime(server) {} }
        let url = "rediss://localhost:\(tlsPort)?ca=\(fixture.caFile)&cert=\(fixture.clientCertificateFile)&key=\(fixture.clientKeyFile)"
        let nodes = [
            try await NodeProcess.start(redis: [url], nodeID: "tls-a-\(tlsPort)"),
            try await NodeProcess.start(redis: [url], nodeID: "tls-b-\(tlsPort)"),
        ]
        let alice = try await ChatClient.connect(port: nodes[0].port, room: "tls")
        let bob = try await ChatClient.connect(port: nodes[1].port, room: "tls")
        alice.say("over tls")
        #expect(await eventually { bob.messages.contains("over tls") })
        bob.say("back")
        #expect(await eventually { alice.messages.contains("back") })
    }

    @Test func aWrongCAIsOneLineAndExit1() async throws {
        let fixture = try RedisTLSFixture.make()
        let (server, tlsPort) = try await fixture.startServer()
        defer { withExtendedLifetime(server) {} }
        let node = try await NodeProcess.start(
            redis: ["rediss://127.0.0.1:\(tlsPort)?ca=\(fixture.otherCAFile)"], nodeID: "tls-wrong-ca-\(tlsPort)", waitForReady: false
        )
        let status = await node.exitStatus()
        #expect(status == 1, "\(node.log)")
        let lines = node.log.split(separator: "\n").filter { $0.contains("is not signed by the CA in") }
        #expect(lines.count == 1, "\(node.log)")
        #expect(lines.first?.contains("ca=") == true)
    }
}
