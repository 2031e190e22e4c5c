import ChannelsTestSupport
import Foundation
import Testing

/// What the Docker image and the deploy files promise, checked without a Docker engine: the image ships
/// `channels-ctl` beside the node on the PATH (so `docker-compose exec node1 channels-ctl groups` works
/// with the node's own CHANNELS_REDIS_URL), and Prometheus scrapes the compose file's nodes.
@Suite struct ImageTests {
    static let root = ScriptedCluster.packageRoot

    @Test func theImageShipsChannelsCtlBesideTheNode() throws {
        let dockerfile = try String(contentsOf: Self.root.appendingPathComponent("Dockerfile"), encoding: .utf8)
        #expect(dockerfile.contains("--product channels-ctl"))
        let copy = try #require(dockerfile.split(separator: "\n").first { $0.hasPrefix("COPY --from=build") })
        #expect(copy.contains("/channels-ctl") && copy.contains("/channels-node") && copy.hasSuffix("/usr/local/bin/"))
        // The entrypoint is the node; `exec` finds channels-ctl on the PATH.
        #expect(dockerfile.contains(#"ENTRYPOINT ["/usr/local/bin/channels-node"]"#))
    }

    @Test func prometheusScrapesTheComposeNodes() async throws {
        let compose = Self.root.appendingPathComponent("docker-compose.yml").path
        let services = try await run("/usr/bin/env", ["docker-compose", "-f", compose, "config", "--services"], environment: [:])
        let nodes = Set(services.output.split(whereSeparator: \.isNewline).map(String.init).filter { $0.hasPrefix("node") })
        #expect(nodes.count == 3)
        let config = try String(contentsOf: Self.root.appendingPathComponent("deploy/prometheus/prometheus.yml"), encoding: .utf8)
        for node in nodes { #expect(config.contains("\"\(node):8000\"")) }
    }
}
