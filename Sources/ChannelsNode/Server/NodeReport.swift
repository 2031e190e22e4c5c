import ChannelLayers
import ChannelsProtocol
import OrderedCollections
import Synchronization

/// Whether the node is draining, shared by the node and its reports.
final class DrainingFlag: Sendable {
    private let value = Atomic<Bool>(false)
    var isSet: Bool { value.load(ordering: .relaxed) }
    func set() { value.store(true, ordering: .relaxed) }
}

/// What a node tells about itself when the API asks every node (a ``NodeControl`` `report`): its
/// connections, rates, layer and Redis state, version. Keys are the API's JSON field names.
struct NodeReport: Sendable {
    let nodeID: String
    let layerName: String
    let startedAt: Double
    let layer: any ChannelLayer
    let metrics: NodeMetrics
    let connections: ConnectionRegistry
    let probe: ReadinessProbe
    let draining: DrainingFlag
    let apiEnabled: Bool

    func make() -> MessageValue {
        let statistics = layer.statistics
        let rates = metrics.traffic.current
        var report: OrderedDictionary<String, MessageValue> = [:]
        report["version"] = .string(ChannelsNode.version)
        report["layer"] = .string(layerName)
        report["started_at"] = .double(startedAt)
        report["connections"] = .int(Int64(connections.count))
        report["groups"] = .int(Int64(statistics.localGroups))
        report["ready"] = .bool(!draining.isSet && probe.isPassing)
        report["draining"] = .bool(draining.isSet)
        report["layer_reachable"] = .bool(probe.isPassing)
        report["messages_in_per_second"] = .double(Self.rounded(rates.messagesIn))
        report["messages_out_per_second"] = .double(Self.rounded(rates.messagesOut))
        report["deliveries"] = .int(Int64(statistics.deliveries))
        report["dropped"] = .int(Int64(statistics.dropped))
        report["missed"] = .int(Int64(statistics.missed))
        report["redis_connection_losses"] = .int(Int64(statistics.connectionLosses))
        report["redis_resubscriptions"] = .int(Int64(statistics.reconnections))
        report["undecodable"] = .int(Int64(statistics.undecodable))
        report["api"] = .bool(apiEnabled)
        let busiest = rates.groups.filter { !ChannelsNode.unlistedGroupPrefixes.contains(where: $0.key.hasPrefix) }.sorted { $0.value > $1.value }.prefix(200)
        report["group_rates"] = .map(OrderedDictionary(uniqueKeysWithValues: busiest.map { ($0.key, MessageValue.double(Self.rounded($0.value))) }))
        return .map(report)
    }

    static func rounded(_ value: Double) -> Double { (value * 100).rounded() / 100 }
}
