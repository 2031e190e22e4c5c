import ChannelsTestSupport
import HiredisClient
import Testing

/// Every way connecting or sending can fail gives a typed error with a useful message, and nothing crashes.
@Suite struct RedisFailureTests {
    @Test func refusedConnection() async throws {
        let port = try freePort()
        await #expect {
            _ = try await RedisConnection.connect(configuration: try RedisConfiguration(url: "redis://127.0.0.1:\(port)"))
        } throws: { error in
            guard let error = error as? RedisError else { return false }
            return error.code == .connectionRefused && error.message.contains("127.0.0.1:\(port)")
                && error.message.contains("is redis-server running")
        }
    }

    @Test func missingUnixSocket() async throws {
        await #expect {
            _ = try await RedisConnection.connect(configuration: try RedisConfiguration(url: "unix:///nonexistent/redis.sock"))
        } throws: { error in
            guard let error = error as? RedisError else { return false }
            return error.code == .connectionFailed && error.message.contains("/nonexistent/redis.sock")
        }
    }

    @Test func wrongPassword() async throws {
        let server = try await RedisServer.start(password: "right-password")
        await #expect {
            _ = try await RedisConnection.connect(configuration: try RedisConfiguration(url: "redis://:wrong@127.0.0.1:\(server.port)"))
        } throws: { error in
            guard let error = error as? RedisError else { return false }
            return error.code == .authenticationFailed && error.serverMessage?.hasPrefix("WRONGPASS") == true
                && !error.isRetryable
        }
    }

    @Test func missingPassword() async throws {
        let server = try await RedisServer.start(password: "right-password")
        await #expect {
            _ = try await RedisConnection.connect(configuration: try RedisConfiguration(url: "redis://127.0.0.1:\(server.port)"))
        } throws: { error in
            guard let error = error as? RedisError else { return false }
            return error.code == .authenticationRequired && error.serverMessage?.hasPrefix("NOAUTH") == true
        }
        let good = try await RedisConnection.connect(configuration: server.configuration())
        #expect(try await good.send("PING") == .status("PONG"))
        await good.close()
    }

    @Test func aclUser() async throws {
        let server = try await RedisServer.start()
        let admin = try await RedisConnection.connect(configuration: server.configuration())
        try await admin.send("ACL", "SETUSER", "node", "on", ">node-secret", "~*", "&*", "+@all")
        await admin.close()

        let node = try await RedisConnection.connect(
            configuration: try RedisConfiguration(url: "redis://node:node-secret@127.0.0.1:\(server.port)")
        )
        #expect(try await node.send("ACL", "WHOAMI") == .bulkString(Array("node".utf8)))
        await node.close()

        await #expect {
            _ = try await RedisConnection.connect(
                configuration: try RedisConfiguration(url: "redis://node:not-it@127.0.0.1:\(server.port)")
            )
        } throws: { error in
            (error as? RedisError)?.code == .authenticationFailed
        }
    }

    @Test func aCommandTimeoutResetsTheConnection() async throws {
        let server = try await RedisServer.start()
        let connection = try await RedisConnection.connect(configuration: server.configuration(commandTimeout: .seconds(1)))
        defer { Task { await connection.close() } }

        let started = ContinuousClock.now
        await #expect {
            try await connection.send("BLPOP", "nothing-here", 3)
        } throws: { error in
            guard let error = error as? RedisError else { return false }
            return error.code == .timeout && error.message.contains("did not answer within") && error.mayHaveRun
        }
        // The timeout fired, not BLPOP's own reply after 3 s.
        #expect(ContinuousClock.now - started < .milliseconds(2800))
        // Reset: what the connection held back is gone, and later calls say they were never sent.
        #expect(await eventually(timeout: .seconds(2)) { connection.isClosed })
        await #expect {
            try await connection.send("ECHO", "after")
        } throws: { error in
            (error as? RedisError)?.mayHaveRun == false
        }
        // A client reconnects by itself.
        let client = RedisClient(configuration: server.configuration(commandTimeout: .seconds(1)))
        _ = try? await client.send("BLPOP", "nothing-here", 3)
        // A command sent while the reset connection is still closing may fail (and says it may have run);
        // the client then connects again by itself.
        #expect(await eventually(timeout: .seconds(5)) { (try? await client.send("ECHO", "after")) == .bulkString(Array("after".utf8)) })
        await client.close()
    }

    @Test func aCommandCutOffByAPartitionNeverRunsAfterItHeals() async throws {
        let server = try await RedisServer.start()
        let client = RedisClient(configuration: server.configuration(commandTimeout: .seconds(1)))
        try await client.send("SET", "k", "before")
        let partition = try await NetworkPartition.cut(port: server.port)
        await #expect {
            try await client.send("SET", "k", "during")
        } throws: { error in
            guard let error = error as? RedisError else { return false }
            return error.code == .timeout && error.mayHaveRun
        }
        try await partition.heal()
        // TCP would have retransmitted the held-back SET within this.
        try await Task.sleep(for: .seconds(4))
        #expect(try await client.send("GET", "k") == .bulkString(Array("before".utf8)), "a command reported as timed out ran after the partition healed")
        await client.close()
    }

    @Test func connectTimeoutWhenTheServerDoesNotAnswer() async throws {
        let server = try await RedisServer.start()
        server.pause()
        defer { server.resume() }
        await #expect {
            _ = try await RedisConnection.connect(configuration: server.configuration(connectTimeout: .milliseconds(300)))
        } throws: { error in
            guard let error = error as? RedisError else { return false }
            return error.code == .timeout && error.message.contains("did not answer")
        }
    }

    @Test func inFlightCommandsFailWhenTheServerDies() async throws {
        let server = try await RedisServer.start()
        let connection = try await RedisConnection.connect(configuration: server.configuration())
        let blocked = Task { try await connection.send("BLPOP", "never", 5) }
        try await Task.sleep(for: .milliseconds(200))
        server.kill()
        await #expect {
            try await blocked.value
        } throws: { error in
            (error as? RedisError)?.code == .connectionClosed
        }
        #expect(connection.isClosed)
        await #expect {
            try await connection.send("PING")
        } throws: { error in
            (error as? RedisError)?.code == .connectionClosed
        }
    }

    @Test func clientReconnectsAfterARestartWithoutAStorm() async throws {
        let server = try await RedisServer.start()
        let client = RedisClient(
            configuration: server.configuration(),
            reconnectPolicy: RedisReconnectPolicy(initialDelay: .seconds(5), maximumDelay: .seconds(5), jitter: 0)
        )
        #expect(try await client.send("PING") == .status("PONG"))
        #expect(client.connectionAttempts == 1)
        server.kill()
        #expect(await eventually { !client.isConnected })
        // The first call after the loss reconnects, is refused, and starts the backoff window.
        await #expect(throws: RedisError.self) { try await client.send("PING") }
        let attemptsAfterLoss = client.connectionAttempts
        #expect(attemptsAfterLoss == 2)
        // Within the window, calls fail with the last error without connecting again: no storm.
        for _ in 0..<50 {
            await #expect {
                try await client.send("PING")
            } throws: { error in
                (error as? RedisError)?.code == .connectionRefused
            }
        }
        #expect(client.connectionAttempts == attemptsAfterLoss)

        try await server.restart()
        let recovered = await eventually {
            (try? await client.send("PING")) == .status("PONG")
        }
        #expect(recovered)
        await client.close()
        await #expect {
            try await client.send("PING")
        } throws: { error in
            (error as? RedisError)?.code == .clientClosed
        }
    }
}
