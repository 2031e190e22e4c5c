import ChannelsTestSupport
import Foundation
import Testing

/// `deploy/grafana/channels-dashboard.json` queries only metrics a real node exports on `/metrics`, and
/// shows every one it exports.
@Suite struct GrafanaDashboardTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// Every `expr` in the dashboard, at any depth.
    static func expressions(in value: Any) -> [String] {
        if let object = value as? [String: Any] {
            return ((object["expr"] as? String).map { [$0] } ?? []) + object.values.flatMap(expressions)
        }
        if let array = value as? [Any] { return array.flatMap(expressions) }
        return []
    }

    static func metricNames(in expression: String) -> Set<String> {
        let regex = try! Regex(#"channels_[a-z_]+"#)
        return Set(expression.matches(of: regex).map { String(expression[$0.range]) })
    }

    @Test func everyQueriedMetricExistsOnMetrics() async throws {
        let data = try Data(contentsOf: Self.root.appendingPathComponent("deploy/grafana/channels-dashboard.json"))
        let dashboard = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let panels = try #require(dashboard["panels"] as? [[String: Any]])
        #expect(panels.count >= 10)
        let expressions = panels.flatMap(Self.expressions)
        #expect(expressions.count >= panels.count, "every panel queries something")
        let queried = expressions.reduce(into: Set<String>()) { $0.formUnion(Self.metricNames(in: $1)) }

        // With the API and a Django bridge on, so that their metrics exist too.
        let node = try await NodeProcess.start(environment: ["CHANNELS_API_KEYS": "grafana-test-key-0123456789", "CHANNELS_DJANGO_PATHS": "/ws/django/"])
        defer { node.terminate() }
        let exported = Set(try await node.get("/metrics").body.split(whereSeparator: \.isNewline).compactMap { line -> String? in
            guard !line.hasPrefix("#"), let end = line.firstIndex(where: { $0 == "{" || $0 == " " }) else { return nil }
            return String(line[..<end])
        })
        #expect(!exported.isEmpty)
        #expect(queried.subtracting(exported).isEmpty, "queried but not exported: \(queried.subtracting(exported).sorted())")
        // And nothing the node exports is missing from it (a histogram counts through any of its series).
        let shown = queried.map { $0.replacing(try! Regex("_(bucket|sum|count)$"), with: "") }
        let missing = exported.filter { name in !shown.contains(name.replacing(try! Regex("_(bucket|sum|count)$"), with: "")) }
        #expect(missing.isEmpty, "exported but not on the dashboard: \(missing.sorted())")
    }
}
