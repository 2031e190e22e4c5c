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

    @Test func parsesRedissWithTLSFiles() throws {
        let configuration = try RedisConfiguration(
            url: "rediss://:pw@redis.example.com:6380/2?ca=/etc/ssl/redis%20ca.pem&cert=/etc/c.pem&key=/etc/c.key&servername=cache.internal"
        )
        #expect(configuration.address == .tcp(host: "redis.example.com", port: 6380))
        #expect(configuration.database == 2)
        #expect(configuration.password == "pw")
        #expect(
            configuration.tls
                == RedisConfiguration.TLS(caFile: "/etc/ssl/redis ca.pem", certificateFile: "/etc/c.pem", keyFile: "/etc/c.key", serverName: "cache.internal")
        )
        #expect(configuration.redactedDescription == "rediss://:***@redis.example.com:6380/2")

        let systemRoots = try RedisConfiguration(url: "rediss://redis.example.com")
        #expect(systemRoots.tls == RedisConfiguration.TLS())
        #expect(try RedisConfiguration(url: "redis://127.0.0.1").tls == nil)
    }

    @Test func parsesSentinelURLs() throws {
        let configuration = try RedisConfiguration(
            url: "redis-sentinel://node:pw@10.0.0.1:26379,10.0.0.2,[::1]:26400/my%20master/3?sentinel_password=sp&sentinel_username=watcher"
        )
        let sentinel = RedisConfiguration.Sentinel(
            endpoints: [.init(host: "10.0.0.1", port: 26379), .init(host: "10.0.0.2", port: 26379), .init(host: "::1", port: 26400)],
            masterName: "my master", username: "watcher", password: "sp"
        )
        #expect(configuration.address == .sentinel(sentinel))
        #expect(configuration.username == "node")
        #expect(configuration.password == "pw")
        #expect(configuration.database == 3)
        #expect(configuration.tls == nil)
        #expect(configuration.redactedDescription == "redis-sentinel://node:***@10.0.0.1:26379,10.0.0.2:26379,[::1]:26400/my master/3")
        #expect(!configuration.redactedDescription.contains("sp"))

        let secure = try RedisConfiguration(url: "rediss-sentinel://127.0.0.1:26379/mymaster?ca=/ca.pem")
        #expect(secure.tls == RedisConfiguration.TLS(caFile: "/ca.pem"))
        #expect(secure.redactedDescription == "rediss-sentinel://127.0.0.1:26379/mymaster")
        #expect("\(secure.address)" == "master 'mymaster' via sentinels 127.0.0.1:26379")
    }

    @Test(arguments: [
        ("redis://127.0.0.1?ca=/ca.pem", "'ca' is a TLS setting: use rediss://"),
        ("redis://127.0.0.1?servername=x", "'servername' is a TLS setting"),
        ("rediss://127.0.0.1?cert=/c.pem", "'cert' and 'key' go together"),
        ("rediss://127.0.0.1?key=/c.key", "'cert' and 'key' go together"),
        ("rediss://127.0.0.1?ca=", "'ca=' needs a value"),
        ("redis-sentinel://127.0.0.1:26379", "needs the master's name"),
        ("redis-sentinel://127.0.0.1:26379/", "needs the master's name"),
        ("redis-sentinel:///mymaster", "at least one sentinel"),
        ("redis-sentinel://a:1,,b:2/mymaster", "empty sentinel address"),
        ("redis-sentinel://a:x/mymaster", "bad port 'x'"),
        ("redis-sentinel://a:1/mymaster/x", "database 'x' is not a non-negative integer"),
        ("redis-sentinel://a:1/mymaster/1/extra", "unexpected '/extra' after the database"),
        ("redis://127.0.0.1?sentinel_password=x", "'sentinel_password' applies to sentinels"),
    ])
    func rejectsBadTLSAndSentinelURLsWithAReason(url: String, reason: String) {
        #expect {
            try RedisConfiguration(url: url)
        } throws: { error in
            guard let error = error as? RedisError else { return false }
            return error.code == .invalidURL && error.message.contains(reason)
        }
    }

    @Test func errorMessagesNeverShowQueryPasswords() {
        for url in [
            "redis-sentinel://127.0.0.1:26379/m?sentinel_password=topsecret&color=blue",
            "unix:///tmp/r.sock?password=topsecret&color=blue",
        ] {
            #expect {
                try RedisConfiguration(url: url)
            } throws: { error in
                "\(error)".contains("unknown query parameter 'color'") && "\(error)".contains("password=***")
                    && !"\(error)".contains("topsecret")
            }
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
