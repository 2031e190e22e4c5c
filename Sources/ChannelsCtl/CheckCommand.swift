import ArgumentParser
import HiredisClient

/// Shows that Redis is reachable and does what the channel layer needs: commands, binary values, pub/sub.
struct CheckCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Connect to Redis and check commands, binary values and a pub/sub round trip."
    )

    @OptionGroup var redis: RedisOptions

    func run() async throws {
        let configuration = try redis.configuration()
        do {
            try await check(configuration)
        } catch {
            throw failure(error)
        }
    }

    private func check(_ configuration: RedisConfiguration) async throws(RedisError) {
        print("redis      \(configuration.redactedDescription)")
        let connection = try await RedisConnection.connect(configuration: configuration)
        let started = ContinuousClock.now
        try await connection.send("PING")
        print("ping       ok (\(milliseconds(ContinuousClock.now - started)) ms)")

        let info = try await connection.send("INFO", "server").string ?? ""
        let version = info.split(whereSeparator: \.isNewline).first { $0.hasPrefix("redis_version:") }?.dropFirst(14) ?? "?"
        print("version    \(version)")

        let key = "channels-ctl:check:\(UInt64.random(in: 0...UInt64.max))"
        let value: [UInt8] = [0x00, 0xff, 0x0d, 0x0a] + Array("binary-safe".utf8)
        try await connection.send("SET", .string(key), .bytes(value), "EX", 10)
        let readBack = try await connection.send("GET", .string(key)).bytes
        try await connection.send("DEL", .string(key))
        guard readBack == value else {
            throw RedisError(.protocolError, "a binary value did not read back unchanged")
        }
        print("binary     ok (\(value.count) bytes with NUL and CRLF round-tripped)")

        let subscriber = RedisSubscriber(configuration: configuration, healthCheckInterval: nil)
        let runner = Task { try await subscriber.run() }
        defer { runner.cancel() }
        let channel = "channels-ctl:check:\(UInt64.random(in: 0...UInt64.max))"
        try await subscriber.subscribe([channel])
        let publishedAt = ContinuousClock.now
        let receivers = try await connection.send("PUBLISH", .string(channel), "hello").integer ?? 0
        var messages = subscriber.messages.makeAsyncIterator()
        guard receivers == 1, let message = await messages.next(), message.payload == Array("hello".utf8) else {
            throw RedisError(.protocolError, "the pub/sub round trip did not deliver the message")
        }
        print("pubsub     ok (round trip \(milliseconds(ContinuousClock.now - publishedAt)) ms)")
        await connection.close()
    }

    // Returns a concrete type: an opaque `some Error` here crashed swiftc 6.3.1 in release builds (IRGen).
    private func failure(_ error: any Error) -> ValidationFailure {
        let message = (error as? RedisError)?.message ?? "\(error)"
        return ValidationFailure(message: "channels-ctl check: \(message)")
    }
}

/// An error whose text is printed as is, followed by a non-zero exit.
struct ValidationFailure: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}

func milliseconds(_ duration: Duration) -> String {
    let value = duration / .milliseconds(1)
    return String(Double(Int(value * 100)) / 100)
}
