import ChannelsTestSupport
import HiredisClient
import Testing

@Suite struct RedisSubscriberTests {
    /// Runs a subscriber for the length of `body`, then cancels it.
    func withSubscriber<T: Sendable>(
        _ configuration: RedisConfiguration,
        policy: RedisReconnectPolicy = RedisReconnectPolicy(initialDelay: .milliseconds(50), maximumDelay: .milliseconds(200)),
        healthCheck: Duration? = .seconds(5),
        _ body: (RedisSubscriber) async throws -> T
    ) async throws -> T {
        let subscriber = RedisSubscriber(configuration: configuration, reconnectPolicy: policy, healthCheckInterval: healthCheck)
        let runner = Task { try await subscriber.run() }
        defer { runner.cancel() }
        return try await body(subscriber)
    }

    @Test func deliversChannelAndPatternMessages() async throws {
        let server = try await RedisServer.start()
        let publisher = RedisClient(configuration: server.configuration())
        try await withSubscriber(server.configuration()) { subscriber in
            try await subscriber.subscribe(["asgi__group__lobby", "asgi__group__other"])
            try await subscriber.psubscribe(["news.*"])
            #expect(subscriber.channels == ["asgi__group__lobby", "asgi__group__other"])

            let payload: [UInt8] = [0x82, 0x00, 0xff, 0x0d, 0x0a]
            #expect(try await publisher.send("PUBLISH", "asgi__group__lobby", .bytes(payload)) == .integer(1))
            #expect(try await publisher.send("PUBLISH", "news.sport", "goal") == .integer(1))
            #expect(try await publisher.send("PUBLISH", "unrelated", "x") == .integer(0))

            var iterator = subscriber.messages.makeAsyncIterator()
            #expect(await iterator.next() == RedisPubSubMessage(channel: "asgi__group__lobby", payload: payload))
            #expect(await iterator.next() == RedisPubSubMessage(channel: "news.sport", pattern: "news.*", payload: Array("goal".utf8)))

            try await subscriber.unsubscribe(["asgi__group__lobby"])
            try await subscriber.punsubscribe(["news.*"])
            #expect(subscriber.channels == ["asgi__group__other"])
            #expect(try await publisher.send("PUBLISH", "asgi__group__lobby", "late") == .integer(0))
            #expect(try await publisher.send("PUBSUB", "NUMSUB", "asgi__group__other") == .array([.bulkString(Array("asgi__group__other".utf8)), .integer(1)]))
        }
        await publisher.close()
    }

    @Test func resubscribesEverythingAfterRedisRestarts() async throws {
        let server = try await RedisServer.start()
        try await withSubscriber(server.configuration()) { subscriber in
            var events = subscriber.events.makeAsyncIterator()
            let channels = (0..<300).map { "asgi__group__room\($0)" }
            try await subscriber.subscribe(channels)
            try await subscriber.psubscribe(["asgispecific.*"])
            #expect(await events.next() == .connected)

            server.kill()
            guard case .connectionLost = await events.next() else {
                Issue.record("expected connectionLost")
                return
            }
            try await server.restart()
            var next = await events.next()
            while case .connectFailed = next { next = await events.next() }
            #expect(next == .resubscribed(channels: 300, patterns: 1))
            #expect(subscriber.statistics.connectionsLost == 1)
            #expect(subscriber.statistics.resubscriptions == 1)

            let publisher = try await RedisConnection.connect(configuration: server.configuration())
            #expect(try await publisher.send("PUBLISH", "asgi__group__room299", "after restart") == .integer(1))
            #expect(try await publisher.send("PUBLISH", "asgispecific.abc", "direct") == .integer(1))
            var messages = subscriber.messages.makeAsyncIterator()
            #expect(await messages.next() == RedisPubSubMessage(channel: "asgi__group__room299", payload: Array("after restart".utf8)))
            #expect(await messages.next()?.pattern == "asgispecific.*")
            await publisher.close()
        }
    }

    @Test func subscribeWhileDisconnectedCompletesOnceRedisIsBack() async throws {
        let server = try await RedisServer.start()
        server.kill()
        try await withSubscriber(server.configuration(commandTimeout: .seconds(10))) { subscriber in
            async let subscribed: Void = subscriber.subscribe(["waiting"])
            try await Task.sleep(for: .milliseconds(300))
            #expect(!subscriber.isConnected)
            try await server.restart()
            try await subscribed
            let publisher = try await RedisConnection.connect(configuration: server.configuration())
            #expect(try await publisher.send("PUBLISH", "waiting", "hello") == .integer(1))
            await publisher.close()
        }
    }

    @Test func aSubscriberMadeToFailWhileUnreachableFailsAtOnceAndKeepsNothing() async throws {
        let server = try await RedisServer.start()
        server.kill()
        let subscriber = RedisSubscriber(configuration: server.configuration(commandTimeout: .seconds(10)), failsWhileUnreachable: true)
        let runner = Task { try await subscriber.run() }
        defer { runner.cancel() }
        // Waiting for the first attempt, then told it failed; later calls fail at once.
        for name in ["first", "second"] {
            let started = ContinuousClock.now
            await #expect {
                try await subscriber.subscribe([name])
            } throws: { error in
                guard let error = error as? RedisError else { return false }
                // Refused, or (seen in full runs, cause not found: the port of the killed server answered with a
                // reset) failed: unreachable either way, and nothing made.
                let unreachable = error.code == .connectionRefused || error.code == .connectionFailed
                return unreachable && !error.mayHaveRun && error.message.contains("was not made")
            }
            #expect(ContinuousClock.now - started < .seconds(2))
        }
        #expect(subscriber.channels.isEmpty, "a refused subscription is not made later behind the caller's back")
        try await server.restart()
        #expect(await eventually(timeout: .seconds(10)) { subscriber.isConnected })
        try await subscriber.subscribe(["third"])
        #expect(subscriber.channels == ["third"])
    }

    @Test func detectsAFrozenServerWithPing() async throws {
        let server = try await RedisServer.start()
        // The 1 s connect timeout makes reconnecting to the frozen server fail fast; subscribe itself may wait longer under load.
        try await withSubscriber(server.configuration(commandTimeout: .seconds(5), connectTimeout: .seconds(1)), healthCheck: .milliseconds(200)) { subscriber in
            var events = subscriber.events.makeAsyncIterator()
            try await subscriber.subscribe(["c"])
            #expect(await events.next() == .connected)
            server.pause()
            guard case .connectionLost(let error) = await events.next() else {
                Issue.record("expected connectionLost after the server froze")
                server.resume()
                return
            }
            #expect(error.code == .timeout)
            server.resume()
            var next = await events.next()
            while case .connectFailed = next { next = await events.next() }
            #expect(next == .resubscribed(channels: 1, patterns: 0))
        }
    }

    @Test func wrongPasswordStopsAtOnceWithoutRetrying() async throws {
        let server = try await RedisServer.start(password: "right")
        let subscriber = RedisSubscriber(configuration: try RedisConfiguration(url: "redis://:wrong@127.0.0.1:\(server.port)"))
        await #expect {
            try await subscriber.run()
        } throws: { error in
            (error as? RedisError)?.code == .authenticationFailed
        }
        #expect(subscriber.statistics.connectFailures == 0)
        var events = subscriber.events.makeAsyncIterator()
        guard case .stopped(let error) = await events.next() else {
            Issue.record("expected stopped")
            return
        }
        #expect(error?.code == .authenticationFailed)
        await #expect {
            try await subscriber.subscribe(["x"])
        } throws: { error in
            (error as? RedisError)?.code == .clientClosed
        }
    }

    @Test func aclRefusedSubscribeIsReportedAndDropped() async throws {
        let server = try await RedisServer.start()
        let admin = try await RedisConnection.connect(configuration: server.configuration())
        try await admin.send("ACL", "SETUSER", "limited", "on", ">pw", "~*", "resetchannels", "&allowed.*", "+@all")
        await admin.close()
        let configuration = try RedisConfiguration(url: "redis://limited:pw@127.0.0.1:\(server.port)")
        try await withSubscriber(configuration) { subscriber in
            try await subscriber.subscribe(["allowed.one"])
            await #expect {
                try await subscriber.subscribe(["forbidden"])
            } throws: { error in
                guard let error = error as? RedisError else { return false }
                return error.code == .errorReply && error.serverMessage?.hasPrefix("NOPERM") == true
            }
            #expect(subscriber.channels == ["allowed.one"])
        }
    }

    @Test func slowConsumerPausesReadingInsteadOfBuffering() async throws {
        let server = try await RedisServer.start()
        let publisher = try await RedisConnection.connect(configuration: server.configuration())
        try await withSubscriber(server.configuration()) { subscriber in
            try await subscriber.subscribe(["firehose"])
            let total = 30_000
            let payload = [UInt8](repeating: 0x61, count: 100)
            for start in stride(from: 0, to: total, by: 1000) {
                _ = try await publisher.pipeline((start..<start + 1000).map { _ in RedisCommand("PUBLISH", "firehose", .bytes(payload)) })
            }
            // Not reading: the subscriber must stop pulling from the socket well short of all messages.
            let pulled = await eventually(timeout: .seconds(2)) { subscriber.statistics.messagesReceived >= total }
            #expect(!pulled)
            #expect(subscriber.statistics.messagesReceived < total)
            var received = 0
            for await _ in subscriber.messages {
                received += 1
                if received == total { break }
            }
            #expect(received == total)
        }
        await publisher.close()
    }
}
