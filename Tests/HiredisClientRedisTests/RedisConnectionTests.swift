import ChannelsTestSupport
import HiredisClient
import Synchronization
import Testing

@Suite struct RedisConnectionTests {
    @Test func roundTripsBinaryKeysAndValues() async throws {
        let server = try await RedisServer.start()
        let connection = try await RedisConnection.connect(configuration: server.configuration())
        defer { Task { await connection.close() } }

        let key: [UInt8] = [0x6b, 0x00, 0xff, 0x0d, 0x0a, 0x00]
        let value: [UInt8] = (0...255).map { UInt8($0) } + [0, 0, 13, 10]
        #expect(try await connection.send("SET", .bytes(key), .bytes(value)) == .status("OK"))
        #expect(try await connection.send("GET", .bytes(key)) == .bulkString(value))
        #expect(try await connection.send("STRLEN", .bytes(key)) == .integer(Int64(value.count)))
        #expect(try await connection.send("GET", "missing") == .null)
        #expect(try await connection.send("SET", "empty", .bytes([])) == .status("OK"))
        #expect(try await connection.send("GET", "empty") == .bulkString([]))
    }

    @Test func roundTripsTenMebibytes() async throws {
        let server = try await RedisServer.start()
        let connection = try await RedisConnection.connect(configuration: server.configuration())
        defer { Task { await connection.close() } }

        var generator = SystemRandomNumberGenerator()
        let value = (0..<(10 * 1024 * 1024)).map { _ in UInt8.random(in: 0...255, using: &generator) }
        #expect(try await connection.send("SET", "big", .bytes(value)) == .status("OK"))
        let reply = try await connection.send("GET", "big")
        #expect(reply.bytes?.count == value.count)
        #expect(reply.bytes == value)
    }

    @Test func matchesRepliesOfOneHundredConcurrentCallers() async throws {
        let server = try await RedisServer.start()
        let connection = try await RedisConnection.connect(configuration: server.configuration())
        defer { Task { await connection.close() } }

        let mismatches = try await withThrowingTaskGroup(of: Int.self) { group in
            for task in 0..<100 {
                group.addTask {
                    var mismatches = 0
                    for iteration in 0..<200 {
                        let token = "task-\(task)-iteration-\(iteration)"
                        // Alternate command shapes so a misrouted reply cannot look right by accident.
                        if iteration % 2 == 0 {
                            if try await connection.send("ECHO", .string(token)) != .bulkString(Array(token.utf8)) { mismatches += 1 }
                        } else {
                            if try await connection.send("INCRBY", .string("counter-\(task)"), 1) != .integer(Int64(iteration / 2 + 1)) {
                                mismatches += 1
                            }
                        }
                    }
                    return mismatches
                }
            }
            return try await group.reduce(0, +)
        }
        #expect(mismatches == 0)
        for task in [0, 57, 99] {
            #expect(try await connection.send("GET", .string("counter-\(task)")).integer == 100)
        }
    }

    /// Commands queued without waiting run in the order they were queued, each handler gets its own reply
    /// (error replies as replies), and an awaited command sent after them runs after every one.
    @Test func queuedCommandsRunInOrderAndEachHandlerGetsItsReply() async throws {
        let server = try await RedisServer.start()
        let connection = try await RedisConnection.connect(configuration: server.configuration())
        defer { Task { await connection.close() } }
        let replies = Mutex<[Int: RedisReply]>([:])
        for number in 0..<2000 {
            let command = number == 1000 ? RedisCommand("LPUSH", "counter", "x") : RedisCommand("INCR", "counter")
            let error = connection.enqueue(command) { result in
                replies.withLock { $0[number] = try? result.get() }
            }
            #expect(error == nil)
        }
        // An awaited command sent now runs after every queued one.
        #expect(try await connection.send("GET", "counter") == .bulkString(Array("1999".utf8)))
        let received = replies.withLock { $0 }
        #expect(received.count == 2000)
        #expect((0..<1000).allSatisfy { received[$0] == .integer(Int64($0 + 1)) })
        guard case .error(let text)? = received[1000] else {
            Issue.record("the LPUSH on a string answered \(String(describing: received[1000]))")
            return
        }
        #expect(text.hasPrefix("WRONGTYPE"))
        #expect((1001..<2000).allSatisfy { received[$0] == .integer(Int64($0)) })
    }

    /// A connection that dies fails the handlers still waiting, saying the command may have run; a closed one
    /// refuses to queue at once, and the handler is never called.
    @Test func queuedCommandsFailWithTheConnection() async throws {
        let server = try await RedisServer.start()
        let connection = try await RedisConnection.connect(configuration: server.configuration())
        let outcome = Mutex<Result<RedisReply, RedisError>?>(nil)
        #expect(connection.enqueue(RedisCommand("BLPOP", "nothing", 0)) { result in outcome.withLock { $0 = result } } == nil)
        let inspector = try await RedisConnection.connect(configuration: server.configuration())
        #expect(await eventually { (try? await inspector.send("INFO", "clients").string?.contains("blocked_clients:1")) == true })
        server.kill()
        #expect(await eventually { outcome.withLock { $0 } != nil })
        guard case .failure(let error)? = outcome.withLock({ $0 }) else {
            Issue.record("expected a failure")
            return
        }
        #expect(error.code == .connectionClosed)
        #expect(error.mayHaveRun)
        let called = Mutex(false)
        let refused = connection.enqueue(RedisCommand("PING")) { _ in called.withLock { $0 = true } }
        #expect(refused?.mayHaveRun == false)
        try await Task.sleep(for: .milliseconds(50))
        #expect(!called.withLock { $0 })
    }

    @Test func pipelinesABatchAndKeepsErrorsInPlace() async throws {
        let server = try await RedisServer.start()
        let connection = try await RedisConnection.connect(configuration: server.configuration())
        defer { Task { await connection.close() } }

        let replies = try await connection.pipeline([
            RedisCommand("SET", "s", "text"),
            RedisCommand("INCR", "s"),
            RedisCommand("RPUSH", "l", "a", "b"),
            RedisCommand("LRANGE", "l", 0, -1),
        ])
        #expect(replies.count == 4)
        #expect(replies[0] == .status("OK"))
        #expect(replies[1] == .error("ERR value is not an integer or out of range"))
        #expect(replies[2] == .integer(2))
        #expect(replies[3] == .array([.bulkString(Array("a".utf8)), .bulkString(Array("b".utf8))]))
    }

    @Test func errorRepliesThrowWithTheServerText() async throws {
        let server = try await RedisServer.start()
        let connection = try await RedisConnection.connect(configuration: server.configuration())
        defer { Task { await connection.close() } }

        try await connection.send("SET", "k", "v")
        await #expect {
            try await connection.send("LPUSH", "k", "x")
        } throws: { error in
            guard let error = error as? RedisError else { return false }
            return error.code == .errorReply && error.serverMessage?.hasPrefix("WRONGTYPE") == true
                && error.message.contains("LPUSH failed")
        }
        await #expect {
            try await connection.send("NOSUCHCOMMAND")
        } throws: { error in
            (error as? RedisError)?.serverMessage?.contains("unknown command") == true
        }
        // The connection is still usable after error replies.
        #expect(try await connection.send("GET", "k") == .bulkString(Array("v".utf8)))
    }

    @Test func connectsOverAUnixSocketAndSelectsTheDatabase() async throws {
        let server = try await RedisServer.start()
        let overSocket = try await RedisConnection.connect(
            configuration: try RedisConfiguration(url: "unix://\(server.socketPath)?db=3")
        )
        defer { Task { await overSocket.close() } }
        try await overSocket.send("SET", "where", "db3")

        var tcpConfiguration = server.configuration()
        tcpConfiguration.database = 3
        let database3 = try await RedisConnection.connect(configuration: tcpConfiguration)
        let database0 = try await RedisConnection.connect(configuration: server.configuration())
        #expect(try await database3.send("GET", "where") == .bulkString(Array("db3".utf8)))
        #expect(try await database0.send("GET", "where") == .null)
        await database3.close()
        await database0.close()
    }

    @Test func setsTheClientName() async throws {
        let server = try await RedisServer.start()
        var configuration = server.configuration()
        configuration.clientName = "channels-node-7"
        let connection = try await RedisConnection.connect(configuration: configuration)
        defer { Task { await connection.close() } }
        #expect(try await connection.send("CLIENT", "GETNAME") == .bulkString(Array("channels-node-7".utf8)))
    }
}
