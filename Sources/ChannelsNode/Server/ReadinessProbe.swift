import ChannelLayers
import ChannelsProtocol
import Synchronization

/// Proves the layer works end to end: a group message to a probe group must come back within a second.
///
/// With the Redis layer that is a PUBLISH, a subscription and a delivery through Redis; with the
/// in-memory layer it is a local round trip.
final class ReadinessProbe: Sendable {
    private let layer: any ChannelLayer
    private let group: String
    private let interval: Duration
    private let lastSuccess = Mutex<ContinuousClock.Instant?>(nil)

    init(layer: any ChannelLayer, nodeID: String, interval: Duration) {
        self.layer = layer
        self.group = ChannelsNode.probeGroupPrefix + nodeID
        self.interval = interval
    }

    /// Whether a round trip succeeded within the last three intervals.
    var isPassing: Bool {
        guard let last = lastSuccess.withLock({ $0 }) else { return false }
        return ContinuousClock.now - last < interval * 3
    }

    func run() async {
        var channel: String?
        while !Task.isCancelled {
            do {
                if channel == nil {
                    let created = try await layer.newChannel(prefix: "probe.")
                    try await layer.groupAdd(group, channel: created)
                    channel = created
                }
                if try await roundTrip(on: channel!) {
                    lastSuccess.withLock { $0 = .now }
                }
            } catch {
                // Not ready until Redis answers again; the next round tries again.
            }
            try? await Task.sleep(for: interval)
        }
        if let channel { await layer.deleteChannel(channel) }
    }

    private func roundTrip(on channel: String) async throws -> Bool {
        let nonce = Int64.random(in: 0...Int64.max)
        try await layer.groupSend(["type": "probe", "nonce": .int(nonce)], to: group)
        let layer = self.layer
        return await withTaskGroup(of: Bool.self) { tasks in
            tasks.addTask {
                // Late answers to earlier rounds are skipped.
                while let message = try? await layer.receive(from: channel) {
                    if message["nonce"] == .int(nonce) { return true }
                }
                return false
            }
            tasks.addTask {
                try? await Task.sleep(for: .seconds(1))
                return false
            }
            let result = await tasks.next() ?? false
            tasks.cancelAll()
            return result
        }
    }
}
