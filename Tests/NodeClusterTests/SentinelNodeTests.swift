import ChannelsTestSupport
import ChannelsWebSocketClient
import Foundation
import HiredisClient
import Testing

/// `channels-node --redis redis-sentinel://...` end to end: two nodes share a room through the master the
/// sentinels name, before and after that master is SIGKILLed.
@Suite(.serialized) struct SentinelNodeTests {
    @Test func twoNodesDeliverAcrossAFailover() async throws {
        let topology = try await RedisSentinelTopology.start()
        let oldPrimary = try await topology.master()
        let nodes = [
            try await NodeProcess.start(redis: [topology.url], nodeID: "sentinel-a-\(oldPrimary.port)"),
            try await NodeProcess.start(redis: [topology.url], nodeID: "sentinel-b-\(oldPrimary.port)"),
        ]
        let alice = try await ChatClient.connect(port: nodes[0].port, room: "sentinel")
        let bob = try await ChatClient.connect(port: nodes[1].port, room: "sentinel")
        alice.say("before")
        #expect(await eventually { bob.messages.contains("before") })
        // The nodes' registry went to the primary the sentinels named.
        let keys = try await RedisSentinelTopology.command(oldPrimary, ["DBSIZE"])
        #expect((keys.integer ?? 0) > 0)

        oldPrimary.kill()
        let killed = ContinuousClock.now
        var sequence = 0
        let delivered = await eventually(timeout: .seconds(40), every: .milliseconds(100)) {
            sequence += 1
            alice.say("after-\(sequence)")
            return bob.messages.contains { $0.hasPrefix("after-") }
        }
        let outage = ContinuousClock.now - killed
        #expect(delivered, "node logs:\n\(nodes[0].log)\n\(nodes[1].log)")
        let seconds = Double(outage.components.seconds) + Double(outage.components.attoseconds) / 1e18
        print("sentinel failover: chat delivery across two nodes out for \(String(format: "%.2f", seconds)) s after the primary was SIGKILLed")

        let newPrimary = try await topology.waitForFailover(from: oldPrimary)
        #expect(newPrimary.port != oldPrimary.port)
        // Both directions work on the new primary, and both nodes are ready again. Bob's node has not published
        // since the kill: its first try may find the old connection dead and tell Bob "unavailable" (not
        // delivered), so Bob sends again, as a client told so does.
        var replies = 0
        let replied = await eventually(timeout: .seconds(20), every: .milliseconds(200)) {
            replies += 1
            bob.say("reply-\(replies)")
            return alice.messages.contains { $0.hasPrefix("reply-") }
        }
        #expect(replied, "node logs:\n\(nodes[0].log)\n\(nodes[1].log)")
        for node in nodes {
            #expect(await eventually(timeout: .seconds(15)) { (try? await node.get("/readyz").status) == 200 }, "readyz of \(node.nodeID)")
            #expect(node.isRunning)
        }
        // The nodes' subscriptions moved to the new primary.
        let channels = try await RedisSentinelTopology.command(newPrimary, ["PUBSUB", "CHANNELS", "*"]).array ?? []
        #expect(!channels.isEmpty)
        #expect(alice.client.isOpen && bob.client.isOpen)
    }

    @Test func anUnknownMasterNameIsOneLineAndExit1() async throws {
        let topology = try await RedisSentinelTopology.start(sentinels: 1)
        let url = "redis-sentinel://127.0.0.1:\(topology.sentinels[0].port)/nosuchmaster"
        let node = try await NodeProcess.start(redis: [url], nodeID: "sentinel-unknown-\(topology.sentinels[0].port)", waitForReady: false)
        let status = await node.exitStatus()
        #expect(status == 1, "\(node.log)")
        let lines = node.log.split(separator: "\n").filter { $0.contains("monitors a master named 'nosuchmaster'") }
        #expect(lines.count == 1, "\(node.log)")
    }
}
