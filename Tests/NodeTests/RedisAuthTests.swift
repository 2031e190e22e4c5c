import ChannelsTestSupport
import Foundation
import HiredisClient
import Testing

/// Redis AUTH with an ACL user, end to end: the node, `channels-ctl` and `channels-bench` work with the
/// least privileges SECURITY.md documents; a wrong password is one clear line and exit 1, never a retry storm.
@Suite(.serialized) struct RedisAuthTests {
    /// The ACL rule SECURITY.md recommends for nodes and tools.
    static let aclRule = ["on", ">node-password", "~asgi:*", "&asgi*", "+@pubsub", "+@read", "+@write", "+@connection", "+scan", "+ping", "+eval", "+evalsha"]
    /// The rule it gave before scripts ran by digest: deployments set up with it keep working.
    static let aclRuleWithoutEvalSha = Array(aclRule.dropLast())

    func withACLRedis(rule: [String] = aclRule, _ body: (RedisServer, String) async throws -> Void) async throws {
        let redis = try await RedisServer.start(password: "admin-password")
        let admin = try await RedisConnection.connect(configuration: redis.configuration())
        _ = try await admin.send(RedisCommand("ACL", arguments: ["SETUSER", "channels"] + rule.map { RedisArgument.string($0) }))
        await admin.close()
        try await body(redis, "redis://channels:node-password@127.0.0.1:\(redis.port)")
    }

    @Test(arguments: [aclRule, aclRuleWithoutEvalSha])
    func nodeCtlAndBenchWorkAsALeastPrivilegeACLUser(rule: [String]) async throws {
        try await withACLRedis(rule: rule) { redis, url in
            let node = try await NodeProcess.start(redis: [url])
            let alice = try await ChatClient.connect(port: node.port, room: "acl")
            let bob = try await ChatClient.connect(port: node.port, room: "acl")
            alice.say("through an ACL user")
            #expect(await bob.waitForFrames(1))

            let ctl = try builtProduct("channels-ctl")
            let groups = try await run(ctl, ["groups", "--redis", url, "--json"], environment: [:])
            #expect(groups.status == 0, "\(groups.output)")
            #expect(groups.output.contains("chat_acl"))
            let sent = try await run(ctl, ["send", "chat_acl", #"{"type": "chat.message", "message": "from ctl"}"#, "--redis", url], environment: [:])
            #expect(sent.status == 0, "\(sent.output)")
            #expect(await bob.waitForFrames(2))

            let bench = try builtProduct("channels-bench")
            let published = try await run(bench, ["redis-publish", "--redis", url, "--count", "2000", "--channel", "asgi__group__bench", "--runs", "1", "--json"], environment: [:])
            #expect(published.status == 0, "\(published.output)")
            #expect(!node.log.contains("NOPERM"))
        }
    }

    @Test(arguments: ["channels-node", "channels-ctl", "channels-bench"])
    func aWrongPasswordIsOneLineAndExit1(program: String) async throws {
        try await withACLRedis { redis, _ in
            let url = "redis://channels:wrong-password@127.0.0.1:\(redis.port)"
            let result: (status: Int32, output: String)
            switch program {
            case "channels-node":
                let node = try await NodeProcess.start(redis: [url], waitForReady: false)
                result = (await node.exitStatus() ?? -1, node.log)
            case "channels-ctl":
                result = try await run(try builtProduct(program), ["groups", "--redis", url], environment: [:])
            default:
                result = try await run(try builtProduct(program), ["redis-publish", "--redis", url, "--count", "10", "--runs", "1"], environment: [:])
            }
            #expect(result.status == 1, "\(result.output)")
            let errors = result.output.split(separator: "\n").filter { $0.contains("WRONGPASS") }
            #expect(errors.count == 1, "\(result.output)")
            // One attempt, not a storm: Redis saw a single failed AUTH from this program.
            let admin = try await RedisConnection.connect(configuration: redis.configuration())
            let log = try await admin.send("ACL", "LOG").array ?? []
            await admin.close()
            // ACL LOG groups identical failures into one entry with a count.
            let counts = log.compactMap { entry -> Int? in
                guard let fields = entry.array, fields.count >= 2 else { return nil }
                for index in stride(from: 0, to: fields.count - 1, by: 2) where fields[index].string == "count" {
                    if case .integer(let count) = fields[index + 1] { return Int(count) }
                }
                return nil
            }
            // The node has two connections (commands, pub/sub): one attempt each, then it stops.
            #expect(counts.reduce(0, +) == (program == "channels-node" ? 2 : 1), "ACL LOG: \(log)")
        }
    }
}
