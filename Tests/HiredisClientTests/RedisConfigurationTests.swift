import HiredisClient
import Testing

@Suite struct RedisConfigurationTests {
    @Test func parsesHostPortAndDatabase() throws {
        let configuration = try RedisConfiguration(url: "redis://example.internal:6380/4")
        #expect(configuration.address == .tcp(host: "example.internal", port: 6380))
        #expect(configuration.database == 4)
        #expect(configuration.password == nil)
        #expect(configuration.username == nil)
    }

    @Test func defaultsToLoopbackAndStandardPort() throws {
        let configuration = try RedisConfiguration(url: "redis://")
        #expect(configuration.address == .tcp(host: "127.0.0.1", port: 6379))
        #expect(configuration.database == 0)
    }

    @Test func parsesPasswordAndACLUserWithPercentEncoding() throws {
        let passwordOnly = try RedisConfiguration(url: "redis://:p%40ss%3Aword@127.0.0.1:7000")
        #expect(passwordOnly.password == "p@ss:word")
        #expect(passwordOnly.username == nil)

        let aclUser = try RedisConfiguration(url: "redis://alice:s3cret@127.0.0.1:7000/1")
        #expect(aclUser.username == "alice")
        #expect(aclUser.password == "s3cret")
        #expect(aclUser.database == 1)
        #expect(aclUser.redactedDescription == "redis://alice:***@127.0.0.1:7000/1")
    }

    @Test func parsesIPv6() throws {
        let configuration = try RedisConfiguration(url: "redis://[::1]:6390")
        #expect(configuration.address == .tcp(host: "::1", port: 6390))
    }

    @Test func parsesUnixSocketWithQuery() throws {
        let configuration = try RedisConfiguration(url: "unix:///run/redis/redis.sock?db=2&password=pw")
        #expect(configuration.address == .unixSocket(path: "/run/redis/redis.sock"))
        #expect(configuration.database == 2)
        #expect(configuration.password == "pw")
    }

    @Test(arguments: [
        ("http://127.0.0.1", "unknown scheme 'http'"),
        ("127.0.0.1:6379", "no scheme"),
        ("redis://127.0.0.1:notaport", "bad port 'notaport'"),
        ("redis://127.0.0.1:70000", "port 70000 is out of range"),
        ("redis://127.0.0.1:6379/x", "database 'x' is not a non-negative integer"),
        ("unix://relative.sock", "a unix socket URL needs an absolute path"),
        ("redis://127.0.0.1?color=blue", "unknown query parameter 'color'"),
        ("redis://:%zz@127.0.0.1", "bad percent-encoding in password"),
    ])
    func rejectsMalformedURLsWithAReason(url: String, reason: String) {
        #expect {
            try RedisConfiguration(url: url)
        } throws: { error in
            guard let error = error as? RedisError else { return false }
            return error.code == .invalidURL && error.message.contains(reason)
        }
    }

    @Test func refusesTLSWithAWayOut() {
        #expect {
            try RedisConfiguration(url: "rediss://127.0.0.1:6379")
        } throws: { error in
            guard let error = error as? RedisError else { return false }
            return error.code == .unsupported && error.message.contains("TLS proxy")
        }
    }

    @Test func errorMessagesNeverShowThePassword() {
        #expect {
            try RedisConfiguration(url: "redis://:topsecret@127.0.0.1:bad")
        } throws: { error in
            "\(error)".contains("***") && !"\(error)".contains("topsecret")
        }
    }

    @Test func backoffGrowsAndIsCapped() {
        let policy = RedisReconnectPolicy(initialDelay: .milliseconds(100), maximumDelay: .seconds(1), jitter: 0)
        #expect(policy.delay(forAttempt: 1) == .milliseconds(100))
        #expect(policy.delay(forAttempt: 2) == .milliseconds(200))
        #expect(policy.delay(forAttempt: 4) == .milliseconds(800))
        #expect(policy.delay(forAttempt: 10) == .seconds(1))
    }
}
