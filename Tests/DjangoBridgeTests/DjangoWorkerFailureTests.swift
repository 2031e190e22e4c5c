import ChannelsTestSupport
import ChannelsWebSocketClient
import Foundation
import Synchronization
import Testing

/// Workers stop: a SIGKILL under traffic closes that worker's connections with 1012 within 5 s (counted) while
/// the others carry on; SIGTERM drains (1012 after the current events, exit 0, no loss counted); a worker that
/// does not answer a connect within the handshake timeout gets the client a 504.
@Suite(.serialized) struct DjangoWorkerFailureTests {
    /// Two nodes, two workers, `count` chat clients spread over the nodes (and so over the workers).
    private struct Setup {
        let redis: RedisServer
        let project: DjangoChatProject
        let workers: [PythonProcess]
        let nodes: [NodeProcess]
        var clients: [ChatClient]

        static func start(layer: String, clients count: Int, nodeArguments: [String] = []) async throws -> Setup {
            let redis = try await RedisServer.start()
            // Without the fast path every chat message goes through the workers: traffic for them.
            let project = try await DjangoChatProject(redisURL: redis.url, layer: layer, fastPath: false)
            let workers = [try await project.startWorker(), try await project.startWorker()]
            let nodes = try await project.startNodes(redis: redis.url, hearing: 2, arguments: nodeArguments)
            var clients: [ChatClient] = []
            for index in 0..<count {
                clients.append(try await ChatClient.connect(port: nodes[index % 2].port, room: "lobby", headers: [FrameClient.origin]))
            }
            return Setup(redis: redis, project: project, workers: workers, nodes: nodes, clients: clients)
        }

        func stop() {
            for node in nodes { node.terminate() }
            for worker in workers { worker.terminate() }
        }

        func sum(_ metric: String) async throws -> Double {
            var total = 0.0
            for node in nodes { total += try await DjangoChatProject.metric(metric, on: node) ?? 0 }
            return total
        }
    }

    /// When each client closed (and how), waiting at most `timeout` from `start`.
    private static func closes(of clients: [ChatClient], since start: ContinuousClock.Instant, timeout: Duration) async -> [(
        index: Int, close: WebSocketClient.Close?, after: Duration
    )] {
        await withTaskGroup(of: (Int, WebSocketClient.Close?, Duration).self) { group in
            for (index, client) in clients.enumerated() {
                group.addTask {
                    let close = await client.client.closed(timeout: timeout - (ContinuousClock.now - start))
                    return (index, close, ContinuousClock.now - start)
                }
            }
            var results: [(index: Int, close: WebSocketClient.Close?, after: Duration)] = []
            for await result in group { results.append(result) }
            return results.sorted { $0.index < $1.index }
        }
    }

    @Test(arguments: ["pubsub", "core"])
    func aWorkerKilledUnderTrafficClosesItsConnectionsWith1012Within5Seconds(layer: String) async throws {
        var setup = try await Setup.start(layer: layer, clients: 12)
        defer { setup.stop() }
        let stopped = Atomic<Bool>(false)
        let clients = setup.clients
        let traffic = Task {
            var round = 0
            while !stopped.load(ordering: .relaxed) {
                for (index, client) in clients.enumerated() where client.client.isOpen { client.say("c\(index)-\(round)") }
                round += 1
                try? await Task.sleep(for: .milliseconds(50))
            }
        }
        // Traffic flows through both workers before one dies.
        #expect(await eventually(timeout: .seconds(10)) { clients.allSatisfy { $0.frames.count >= 24 } })

        let killedAt = ContinuousClock.now
        setup.workers[0].kill()
        let results = await Self.closes(of: clients, since: killedAt, timeout: .seconds(5))
        stopped.store(true, ordering: .relaxed)
        await traffic.value

        let closed = results.filter { $0.close != nil }
        // The dead worker's connections, and only those: closed with 1012 (Service Restart) within 5 s.
        #expect(!closed.isEmpty && closed.count < clients.count, "closed: \(closed.map(\.index))")
        #expect(closed.allSatisfy { $0.close?.code == 1012 }, "\(closed.map { $0.close as Any })")
        #expect(closed.allSatisfy { $0.after < .seconds(5) })
        // Counted on both nodes: one worker lost each, and the connections it took with it.
        #expect(try await setup.sum("channels_django_worker_losses_total") == 2)
        #expect(try await setup.sum("channels_django_lost_connections_total") == Double(closed.count))
        for node in setup.nodes { try await DjangoChatProject.waitForWorkers(1, on: node) }

        // The closed clients reconnect (to the surviving worker) and the room works for everyone.
        for result in closed {
            setup.clients[result.index] = try await ChatClient.connect(port: setup.nodes[result.index % 2].port, room: "lobby", headers: [FrameClient.origin])
        }
        let before = setup.clients.map(\.frames.count)
        setup.clients[0].say("after the loss")
        for (index, client) in setup.clients.enumerated() {
            #expect(await client.waitForFrames(before[index] + 1))
            #expect(client.messages.contains("after the loss"))
        }
    }

    @Test func aWorkerSigtermedDrainsItsConnectionsWith1012AndNoLossIsCounted() async throws {
        let setup = try await Setup.start(layer: "pubsub", clients: 8)
        defer { setup.stop() }
        setup.workers[0].terminate()
        // It closes its connections, says goodbye and exits cleanly.
        #expect(await setup.workers[0].wait(timeout: .seconds(30)) == 0, "\(setup.workers[0].standardError)")
        let results = await Self.closes(of: setup.clients, since: .now, timeout: .seconds(2))
        let closed = results.filter { $0.close != nil }
        #expect(!closed.isEmpty && closed.count < setup.clients.count, "closed: \(closed.map(\.index))")
        #expect(closed.allSatisfy { $0.close?.code == 1012 }, "\(closed.map { $0.close as Any })")
        // The nodes forget it at once, without counting a loss.
        for node in setup.nodes { try await DjangoChatProject.waitForWorkers(1, on: node, timeout: .seconds(5)) }
        #expect(try await setup.sum("channels_django_worker_losses_total") == 0)

        // New connections go to the other worker; the clients that stayed hear them.
        let survivor = try #require(results.first { $0.close == nil }).index
        let newcomer = try await ChatClient.connect(port: setup.nodes[0].port, room: "lobby", headers: [FrameClient.origin])
        newcomer.say("a newcomer")
        #expect(await newcomer.waitForFrames(1))
        #expect(await setup.clients[survivor].waitForFrames(1))
        #expect(setup.clients[survivor].messages == ["a newcomer"])
    }

    @Test func aWorkerThatDoesNotAnswerGetsTheClientA504AfterTheHandshakeTimeout() async throws {
        let redis = try await RedisServer.start()
        let project = try await DjangoChatProject(redisURL: redis.url, layer: "pubsub")
        let worker = try await project.startWorker()
        defer { worker.terminate() }
        let node = try await NodeProcess.start(redis: [redis.url], arguments: project.nodeArguments + ["--handshake-timeout", "1"])
        defer { node.terminate() }
        try await DjangoChatProject.waitForWorkers(1, on: node)

        // Stopped, the worker neither answers nor sends heartbeats; the handshake timeout (1 s) comes before its lease.
        _ = Glibc.kill(worker.processIdentifier, SIGSTOP)
        let refused = await FrameClient.refusal(port: node.port, path: "/ws/chat/lobby/")
        _ = Glibc.kill(worker.processIdentifier, SIGCONT)
        #expect(refused == 504)
        #expect(try await DjangoChatProject.metric("channels_django_unavailable_total", on: node) == 1)
        // Going on, it is heard again and serves.
        try await DjangoChatProject.waitForWorkers(1, on: node)
        let client = try await ChatClient.connect(port: node.port, room: "lobby", headers: [FrameClient.origin])
        client.say("back")
        #expect(await client.waitForFrames(1))
    }
}

/// Redis restarts under nodes and workers: both sides retry and resume by themselves.
@Suite(.serialized) struct DjangoRedisRestartTests {
    @Test(arguments: ["pubsub", "core"])
    func aRedisRestartResumesByItself(layer: String) async throws {
        let redis = try await RedisServer.start()
        let project = try await DjangoChatProject(redisURL: redis.url, layer: layer)
        let worker = try await project.startWorker()
        defer { worker.terminate() }
        let node = try await NodeProcess.start(redis: [redis.url], arguments: project.nodeArguments)
        defer { node.terminate() }
        try await DjangoChatProject.waitForWorkers(1, on: node)
        let before = try await ChatClient.connect(port: node.port, room: "lobby", headers: [FrameClient.origin])
        before.say("before")
        #expect(await before.waitForFrames(1))

        redis.kill()
        try await Task.sleep(for: .seconds(1))
        try await redis.restart()
        // Once both sides are back, a new client connects and chats; the worker was never restarted.
        let resumed = await eventually(timeout: .seconds(30), every: .milliseconds(500)) {
            guard let client = try? await ChatClient.connect(port: node.port, room: "lobby", headers: [FrameClient.origin]) else { return false }
            defer { Task { await client.client.close() } }
            client.say("after")
            return await client.waitForFrames(1, timeout: .seconds(2)) && client.messages == ["after"]
        }
        #expect(resumed, "node log:\n\(node.log)\nworker:\n\(worker.standardError)")
        // The connection from before either goes on or was told to reconnect (1012); never left hanging.
        if before.client.isOpen {
            before.say("still here")
            #expect(await eventually(timeout: .seconds(10)) { before.messages.contains("still here") })
        } else {
            #expect(await before.client.closed(timeout: .seconds(1))?.code == 1012)
        }
    }
}
