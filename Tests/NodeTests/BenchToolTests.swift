import ChannelsTestSupport
import Foundation
import Testing

/// `channels-bench` measured against a real node: its counts must be right for its figures to mean anything.
@Suite(.serialized) struct BenchToolTests {
    static func json(_ output: String) throws -> [String: Any] {
        let line = try #require(output.split(separator: "\n").first { $0.hasPrefix("{") })
        return try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
    }

    /// Over WebSockets, and with the readers on server-sent events (`--transport sse`).
    @Test(arguments: ["websocket", "sse"]) func fanoutCountsEveryDeliveryAtAFixedRate(transport: String) async throws {
        let node = try await NodeProcess.start()
        let result = try await run(
            try builtProduct("channels-bench"),
            ["fanout", "--node", "127.0.0.1:\(node.port)", "--rooms", "2", "--clients", "5", "--publishers", "2",
             "--rate", "50", "--duration", "2", "--transport", transport, "--json"],
            environment: [:]
        )
        #expect(result.status == 0, "\(result.output)")
        let figures = try Self.json(result.output)
        let sent = try #require(figures["messages_sent"] as? Int)
        #expect(figures["connected"] as? Int == 10)
        #expect((90...110).contains(sent))
        // Each message reaches the 5 clients of its room, the publisher included.
        #expect(figures["expected_deliveries"] as? Int == sent * 5)
        #expect(figures["deliveries"] as? Int == sent * 5)
        #expect(figures["lost"] as? Int == 0)
        #expect(figures["duplicates"] as? Int == 0)
        let p50 = try #require(figures["latency_p50_ms"] as? Double)
        let p99 = try #require(figures["latency_p99_ms"] as? Double)
        #expect(p50 > 0 && p50 <= p99)
        // The node's own counter agrees with the generator's.
        let metrics = try await node.get("/metrics").body
        let out = metrics.split(separator: "\n").first { $0.hasPrefix("channels_messages_out_total") }
        // (Each event stream also got its recovery answer: event streams always recover.)
        let streams = transport == "sse" ? 8 : 0
        #expect(out.flatMap { $0.split(separator: " ").last.flatMap { Double($0) } }.map(Int.init) == sent * 5 + streams)
    }

    @Test(arguments: ["websocket", "sse"]) func fanoutFlatOutOverTwoNodesLosesNothing(transport: String) async throws {
        let redis = try await RedisServer.start()
        let nodes = [try await NodeProcess.start(redis: [redis.url]), try await NodeProcess.start(redis: [redis.url])]
        let result = try await run(
            try builtProduct("channels-bench"),
            ["fanout", "--node", "127.0.0.1:\(nodes[0].port)", "--node", "127.0.0.1:\(nodes[1].port)", "--rooms", "1",
             "--clients", "20", "--publishers", "4", "--duration", "2", "--transport", transport, "--json"],
            environment: [:]
        )
        #expect(result.status == 0, "\(result.output)")
        let figures = try Self.json(result.output)
        let sent = try #require(figures["messages_sent"] as? Int)
        #expect(sent > 0)
        #expect(figures["deliveries"] as? Int == sent * 20)
        #expect(figures["lost"] as? Int == 0)
    }

    @Test(arguments: ["websocket", "sse"]) func idleHoldsItsConnections(transport: String) async throws {
        let node = try await NodeProcess.start()
        let result = try await run(
            try builtProduct("channels-bench"),
            ["idle", "--node", "127.0.0.1:\(node.port)", "--connections", "200", "--duration", "1", "--transport", transport, "--broadcast", "--json"],
            environment: [:]
        )
        #expect(result.status == 0, "\(result.output)")
        let figures = try Self.json(result.output)
        #expect(figures["connections"] as? Int == 200)
        #expect(figures["still_open"] as? Int == 200)
        #expect(figures["broadcast_received"] as? Int == 200)
        let opened = try await node.get("/metrics").body.split(separator: "\n").first { $0.hasPrefix("channels_event_streams_opened_total ") }
        #expect(opened.flatMap { Double($0.split(separator: " ").last ?? "") } == (transport == "sse" ? 200 : 0))
    }

    /// bench/loadgen, the C generator: built with the C compiler the toolchain has, its counts agree with the node's.
    @Test func theCLoadGeneratorCountsWhatTheNodeWrote() async throws {
        let root = ScriptedCluster.packageRoot.path
        let binary = NSTemporaryDirectory() + "loadgen-\(UUID().uuidString)"
        let built = try await run("/usr/bin/env", ["cc", "-O2", "-o", binary, root + "/bench/loadgen/loadgen.c"], environment: [:])
        try #require(built.status == 0, "\(built.output)")
        let node = try await NodeProcess.start()
        let result = try await run(
            binary, ["--node", "127.0.0.1:\(node.port)", "--rooms", "2", "--clients", "5", "--publishers", "2", "--duration", "1"], environment: [:]
        )
        #expect(result.status == 0, "\(result.output)")
        let figures = try Self.json(result.output)
        let sent = try #require(figures["messages_sent"] as? Int)
        #expect(sent > 0 && figures["connected"] as? Int == 10)
        // Each message reaches the 5 clients of its room, the publisher included, once.
        #expect(figures["expected_deliveries"] as? Int == sent * 5)
        #expect(figures["deliveries"] as? Int == sent * 5)
        #expect(figures["lost"] as? Int == 0 && figures["duplicates"] as? Int == 0 && figures["closed_by_server"] as? Int == 0)
        let metrics = try await node.get("/metrics").body
        let out = metrics.split(separator: "\n").first { $0.hasPrefix("channels_messages_out_total") }
        #expect(out.flatMap { $0.split(separator: " ").last.flatMap { Double($0) } }.map(Int.init) == sent * 5)
        // A client the server closes is counted with its code: a node draining closes everyone with 1001.
        let draining = try await NodeProcess.start()
        async let closing = run(
            binary, ["--node", "127.0.0.1:\(draining.port)", "--clients", "3", "--publishers", "1", "--duration", "3", "--drain", "0"], environment: [:]
        )
        try await Task.sleep(for: .seconds(1))
        draining.terminate()
        let closed = try Self.json(try await closing.output)
        #expect(closed["closed_by_server"] as? Int == 3, "\(closed)")
        #expect((closed["close_codes"] as? [String: Int]) == ["1001": 3], "\(closed)")
    }

    /// loadgen at a fixed rate, with the Origin a node behind `--allowed-origin` wants (the Django bridge's runs need
    /// both); clients sent with another Origin are closed 4403, counted by code.
    @Test func theCLoadGeneratorSendsAtARateWithAnOrigin() async throws {
        let root = ScriptedCluster.packageRoot.path
        let binary = NSTemporaryDirectory() + "loadgen-\(UUID().uuidString)"
        let built = try await run("/usr/bin/env", ["cc", "-O2", "-o", binary, root + "/bench/loadgen/loadgen.c"], environment: [:])
        try #require(built.status == 0, "\(built.output)")
        let node = try await NodeProcess.start(arguments: ["--allowed-origin", "http://chat.example"])
        let shape = ["--node", "127.0.0.1:\(node.port)", "--rooms", "2", "--clients", "5", "--publishers", "2", "--duration", "2"]
        let result = try await run(binary, shape + ["--rate", "50", "--origin", "http://chat.example"], environment: [:])
        #expect(result.status == 0, "\(result.output)")
        let figures = try Self.json(result.output)
        let sent = try #require(figures["messages_sent"] as? Int)
        #expect(figures["connected"] as? Int == 10)
        #expect(figures["rate"] as? String == "50/s")
        // 50 a second for 2 s, on each publisher's schedule (a flat-out run of this shape sends thousands).
        #expect((95...101).contains(sent), "\(sent)")
        #expect(figures["deliveries"] as? Int == sent * 5)
        #expect(figures["lost"] as? Int == 0 && figures["duplicates"] as? Int == 0)

        let refused = try Self.json(try await run(binary, shape + ["--rate", "50", "--origin", "http://evil.example"], environment: [:]).output)
        #expect((refused["close_codes"] as? [String: Int]) == ["4403": 10], "\(refused)")
        let bad = try await run(binary, shape + ["--rate", "-1"], environment: [:])
        #expect(bad.status == 2 && bad.output.contains("rate >= 0"), "\(bad.output)")
    }

    @Test func noReachableNodeIsAnErrorNotAZeroFigure() async throws {
        let port = try freePort()
        for command in [["fanout", "--clients", "3", "--publishers", "1", "--duration", "1"], ["idle", "--connections", "3", "--duration", "1"]] {
            let result = try await run(try builtProduct("channels-bench"), command + ["--node", "127.0.0.1:\(port)"], environment: [:])
            #expect(result.status == 1, "\(result.output)")
            #expect(result.output.contains("Error: no"), "\(result.output)")
        }
    }
}
