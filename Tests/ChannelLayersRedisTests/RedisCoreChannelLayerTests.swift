import ChannelLayers
@testable import ChannelLayersRedis
import ChannelsProtocol
import ChannelsTestSupport
import Foundation
import HiredisClient
import Synchronization
import Testing

/// The core layer against the real channels_redis `RedisChannelLayer` (PyPI) on real Redis servers.
@Suite struct RedisCoreChannelLayerTests {
    func core(
        _ servers: [RedisServer], keys: [String] = [], groupExpiry: Duration = .seconds(86_400), capacities: ChannelCapacities = ChannelCapacities()
    ) -> RedisCoreChannelLayer.Configuration {
        var configuration = RedisCoreChannelLayer.Configuration(
            hosts: servers.map { $0.configuration() }, groupExpiry: groupExpiry,
            capacities: capacities, encryptionKeys: keys, nodeID: "swift-core"
        )
        configuration.reconnectPolicy = RedisReconnectPolicy(initialDelay: .milliseconds(50), maximumDelay: .milliseconds(300))
        configuration.receiveTimeout = .seconds(1)
        return configuration
    }

    /// `--core` and the key options for the Python side.
    func django(_ command: String, _ arguments: String..., keys: [String] = [], groupExpiry: Int? = nil) throws -> PythonProcess {
        var options = ["--core"]
        if !keys.isEmpty { options += ["--keys", keys.joined(separator: ",")] }
        if let groupExpiry { options += ["--group-expiry", String(groupExpiry)] }
        return try Interop.python(options + [command] + arguments)
    }

    static func servers(_ count: Int) async throws -> [RedisServer] {
        var servers: [RedisServer] = []
        for _ in 0..<count { servers.append(try await RedisServer.start()) }
        return servers
    }

    /// Groups whose keys land on every host of two.
    static let groups = ["chat_lobby", "chat_a", "chat_b", "chat_c", "chat_d"]

    @Test func fernetTokensMatchPythonsCryptography() async throws {
        let fernet = Fernet(channelsKey: "k1")
        let token = String(decoding: fernet.encrypt(Array("hello from swift".utf8)), as: UTF8.self)
        #expect(try await Interop.python(["fernet-decrypt", "k1", token]).nextLine() == "hello from swift")
        #expect(try await Interop.python(["fernet-decrypt", "k2", token]).nextLine() == "INVALID")

        let pythonToken = try await Interop.python(["fernet-encrypt", "k1", "hello from python"]).nextLine()
        #expect(String(decoding: try fernet.decrypt(Array(pythonToken.utf8), ttl: 70), as: UTF8.self) == "hello from python")
        #expect(throws: FernetError.self) { try Fernet(channelsKey: "k2").decrypt(Array(pythonToken.utf8), ttl: 70) }
        // Expired, tampered with, not a token at all.
        #expect(throws: FernetError.self) { try fernet.decrypt(Array(pythonToken.utf8), ttl: 70, now: Int64(Date().timeIntervalSince1970) + 100) }
        var tampered = Array(pythonToken.utf8)
        tampered[40] = tampered[40] == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")
        #expect(throws: FernetError.self) { try fernet.decrypt(tampered, ttl: 70) }
        #expect(throws: FernetError.self) { try fernet.decrypt(Array("garbage".utf8), ttl: nil) }
    }

    @Test(arguments: [1, 2], [[String](), ["secret-one", "secret-two"]])
    func djangoGroupSendReachesSwiftMembers(hostCount: Int, keys: [String]) async throws {
        let servers = try await Self.servers(hostCount)
        let hosts = servers.map(\.url).joined(separator: ",")
        if hostCount == 2 { #expect(Set(Self.groups.map { ShardRing.index(of: $0, hostCount: 2) }) == [0, 1]) }
        try await withCoreLayers([core(servers, keys: keys)]) { layers in
            for group in Self.groups {
                let first = try await layers[0].newChannel()
                let second = try await layers[0].newChannel()
                try await layers[0].groupAdd(group, channel: first)
                try await layers[0].groupAdd(group, channel: second)
                let sender = try django("group-send", hosts, group, #"{"type": "chat.message", "message": "hi \#(group)", "bytes_hex": "00ff"}"#, keys: keys)
                #expect(try await sender.nextLine() == "SENT")
                let expected: Message = ["type": "chat.message", "message": .string("hi \(group)"), "raw": .bytes([0, 255])]
                #expect(try await layers[0].receive(from: first) == expected)
                #expect(try await layers[0].receive(from: second) == expected)
            }
            #expect(layers[0].statistics.undecodable == 0)
        }
    }

    @Test(arguments: [1, 2], [[String](), ["secret-one"]])
    func swiftGroupSendReachesDjangoMembers(hostCount: Int, keys: [String]) async throws {
        let servers = try await Self.servers(hostCount)
        let hosts = servers.map(\.url).joined(separator: ",")
        try await withCoreLayers([core(servers, keys: keys)]) { layers in
            for group in Self.groups {
                let receiver = try django("receive-group", hosts, group, "2", keys: keys)
                _ = try await Interop.ready(receiver)
                try await layers[0].groupSend(["type": "chat.message", "message": .string("to \(group)")], to: group)
                try await layers[0].groupSend(["type": "chat.message", "n": 2.5, "raw": .bytes([7])], to: group)
                #expect(try await receiver.nextLine() == #"{"type": "chat.message", "message": "to \#(group)"}"#)
                #expect(try await receiver.nextLine() == #"{"type": "chat.message", "n": 2.5, "raw": {"__bytes__": "07"}}"#)
                #expect(await receiver.wait() == 0)
            }
        }
    }

    /// With two hosts Django's `send()` picks the host from the full channel name, its receive from the
    /// non-local part (django/channels#1492): the Swift side's names make both the same host.
    @Test(arguments: [1, 2], [[String](), ["secret-one"]])
    func directSendsBothWays(hostCount: Int, keys: [String]) async throws {
        let servers = try await Self.servers(hostCount)
        let hosts = servers.map(\.url).joined(separator: ",")
        try await withCoreLayers([core(servers, keys: keys)]) { layers in
            let receiver = try django("receive", hosts, "1", keys: keys)
            let pythonChannel = try await Interop.ready(receiver)
            #expect(pythonChannel.hasPrefix("specific.") && pythonChannel.contains("!"))
            try await layers[0].send(["type": "direct.swift", "text": "to python"], to: pythonChannel)
            #expect(try await receiver.nextLine() == #"{"type": "direct.swift", "text": "to python"}"#)

            for index in 0..<6 {
                let swiftChannel = try await layers[0].newChannel()
                #expect(ShardRing.index(of: swiftChannel, hostCount: hostCount) == ShardRing.index(of: String(CoreWire.nonLocalName(swiftChannel)), hostCount: hostCount))
                let sender = try django("send", hosts, swiftChannel, #"{"type": "direct.python", "n": \#(index)}"#, keys: keys)
                #expect(try await sender.nextLine() == "SENT")
                #expect(try await layers[0].receive(from: swiftChannel) == ["type": "direct.python", "n": .int(Int64(index))])
            }
        }
    }

    @Test func aDjangoConsumerAndSwiftMembersShareOneGroupSend() async throws {
        let servers = try await Self.servers(1)
        try await withCoreLayers([core(servers), core(servers)]) { layers in
            let receiver = try django("receive-group", servers[0].url, "chat_mixed", "2")
            _ = try await Interop.ready(receiver)
            var channels: [(RedisCoreChannelLayer, String)] = []
            for layer in layers {
                for _ in 0..<3 {
                    let channel = try await layer.newChannel()
                    try await layer.groupAdd("chat_mixed", channel: channel)
                    channels.append((layer, channel))
                }
            }
            try await layers[0].groupSend(["type": "chat.message", "message": "from swift"], to: "chat_mixed")
            let sender = try django("group-send", servers[0].url, "chat_mixed", #"{"type": "chat.message", "message": "from django"}"#)
            #expect(try await sender.nextLine() == "SENT")
            for (layer, channel) in channels {
                #expect(try await layer.receive(from: channel)["message"] == "from swift")
                #expect(try await layer.receive(from: channel)["message"] == "from django")
            }
            #expect(try await receiver.nextLine() == #"{"type": "chat.message", "message": "from swift"}"#)
            #expect(try await receiver.nextLine() == #"{"type": "chat.message", "message": "from django"}"#)
            // One body per process: two Swift nodes and Django got one message each per group send.
            let inspector = try await servers[0].inspector()
            #expect(try await inspector.send("ZCARD", .string("asgi:group:chat_mixed")).integer == 7)
        }
    }

    /// Group sends started without waiting: every Swift member and a Django consumer in the group get them in
    /// the order they were started, each receipt confirms; a full queue is counted as
    /// the awaited send counts it; several hosts, a bad name or a dead Redis refuse or fail them.
    @Test func startedGroupSendsArriveInOrderAndAreConfirmed() async throws {
        let servers = try await Self.servers(1)
        let small = ChannelCapacities(patterns: [.init(glob: "specific.*", capacity: 10_000)])
        try await withCoreLayers([core(servers, capacities: small), core(servers, capacities: small)]) { layers in
            let count = 300
            let receiver = try django("receive-group", servers[0].url, "chat_started", String(count))
            _ = try await Interop.ready(receiver)
            var members: [(RedisCoreChannelLayer, KeepingInbox)] = []
            for layer in layers {
                for _ in 0..<3 {
                    let inbox = KeepingInbox()
                    try await layer.groupAdd("chat_started", channel: try await layer.newChannel(prefix: "specific.", inbox: inbox))
                    members.append((layer, inbox))
                }
            }
            // A first awaited send connects the connection the started ones are queued on.
            try await layers[0].groupSend(["type": "warm.up"], to: "chat_other")
            var receipts: [GroupSendReceipt] = []
            for number in 0..<count {
                receipts.append(try #require(try layers[0].startGroupSend(["type": "chat.message", "n": .int(Int64(number))], to: "chat_started")))
            }
            for receipt in receipts { try await receipt.confirmed() }
            #expect(layers[0].statistics.groupSends == count + 1)
            #expect(await eventually { members.allSatisfy { $0.1.received.withLock { $0.count } >= count } })
            for (_, inbox) in members {
                #expect(inbox.received.withLock { $0.compactMap { $0["n"]?.int } } == (0..<count).map { Int64($0) })
            }
            for number in 0..<count {
                #expect(try await receiver.nextLine() == #"{"type": "chat.message", "n": \#(number)}"#)
            }
            #expect(throws: ChannelLayerError.self) { try layers[0].startGroupSend(["type": "x"], to: "bad group name") }
            #expect(throws: ChannelLayerError.self) { try layers[0].startGroupSend(["type": "x", "__asgi_channel__": "y"], to: "chat_started") }

            servers[0].kill()
            #expect(try await isRefusedOrUnavailable(layers[0], ["type": "too.late"], to: "chat_started"), "a send started on a dead Redis is refused or fails as unavailable")
        }
        // With two hosts the group and the queues live on different connections: sends are not started.
        let two = try await Self.servers(2)
        try await withCoreLayers([core(two)]) { layers in
            try await layers[0].groupSend(["type": "warm.up"], to: "chat_two")
            #expect(try layers[0].startGroupSend(["type": "x"], to: "chat_two") == nil)
        }
    }

    /// A started send into a full process queue is counted and reported as the awaited one is.
    @Test func aStartedGroupSendIntoAFullQueueIsCounted() async throws {
        let servers = try await Self.servers(1)
        try await withCoreLayers([core(servers, capacities: ChannelCapacities(defaultCapacity: 2, processQueueCapacity: nil))]) { layers in
            // A Django process that joined and stopped reading.
            let receiver = try django("receive-group", servers[0].url, "chat_full", "0")
            _ = try await Interop.ready(receiver)
            #expect(await receiver.wait() == 0)
            try await layers[0].groupSend(["type": "warm.up"], to: "chat_other")
            for number in 0..<4 {
                try await #require(try layers[0].startGroupSend(["type": "x.group", "n": .int(Int64(number))], to: "chat_full")).confirmed()
            }
            #expect(layers[0].coreStatistics.overCapacity == 2 && layers[0].statistics.dropped == 2)
        }
    }

    @Test func aFullQueueRefusesSendAndCountsGroupDrops() async throws {
        let servers = try await Self.servers(1)
        // Django's rule: one capacity for every channel, process queues too.
        try await withCoreLayers([core(servers, capacities: ChannelCapacities(defaultCapacity: 2, processQueueCapacity: nil))]) { layers in
            // A Django process that joined and stopped reading.
            let receiver = try django("receive-group", servers[0].url, "chat_full", "0")
            let pythonChannel = try await Interop.ready(receiver)
            #expect(await receiver.wait() == 0)
            try await layers[0].send(["type": "x.one"], to: pythonChannel)
            try await layers[0].send(["type": "x.two"], to: pythonChannel)
            let refused = await #expect(throws: ChannelLayerError.self) { try await layers[0].send(["type": "x.three"], to: pythonChannel) }
            #expect(refused?.code == .channelFull)
            try await layers[0].groupSend(["type": "x.group"], to: "chat_full")
            #expect(layers[0].statistics.dropped == 1)
            #expect(layers[0].coreStatistics.overCapacity == 1)
            // Django's own send to that channel sees the same capacity (ours, 2, is below its 100: it writes).
            let sender = try django("send", servers[0].url, pythonChannel, #"{"type": "x.django"}"#)
            #expect(try await sender.nextLine() == "SENT")
        }
    }

    @Test func aWrongKeyIsCountedAndTheLayerGoesOn() async throws {
        let servers = try await Self.servers(1)
        // Rotation: the node decrypts with either key; Django still encrypts with the old one.
        try await withCoreLayers([core(servers, keys: ["new-key", "old-key"])]) { layers in
            let channel = try await layers[0].newChannel()
            try await layers[0].groupAdd("chat_keys", channel: channel)
            for (keys, text) in [(["old-key"], "one"), (["wrong-key"], "lost"), ([], "plain"), (["new-key"], "two")] {
                let sender = try django("group-send", servers[0].url, "chat_keys", #"{"type": "chat.message", "message": "\#(text)"}"#, keys: keys)
                #expect(try await sender.nextLine() == "SENT")
            }
            #expect(try await layers[0].receive(from: channel)["message"] == "one")
            #expect(try await layers[0].receive(from: channel)["message"] == "two")
            #expect(layers[0].coreStatistics.undecryptable == 2)
            #expect(layers[0].statistics.undecodable == 2)
        }
    }

    @Test func garbageInTheQueueIsCountedAndSkipped() async throws {
        let servers = try await Self.servers(1)
        try await withCoreLayers([core(servers)]) { layers in
            let channel = try await layers[0].newChannel()
            try await layers[0].groupAdd("chat_garbage", channel: channel)
            let inspector = try await servers[0].inspector()
            let queue = "asgi" + String(CoreWire.nonLocalName(channel))
            let now = String(Date().timeIntervalSince1970)
            _ = try await inspector.send("ZADD", .string(queue), .string(now), "short")
            _ = try await inspector.send("ZADD", .string(queue), .string(now), .bytes(Array(repeating: 0xc1, count: 40)))
            _ = try await inspector.send("SET", "asgi:group:chat_wrongtype", "not a sorted set")
            await #expect(throws: ChannelLayerError.self) { try await layers[0].groupSend(["type": "x.y"], to: "chat_wrongtype") }
            let sender = try django("group-send", servers[0].url, "chat_garbage", #"{"type": "chat.message", "message": "after"}"#)
            #expect(try await sender.nextLine() == "SENT")
            #expect(try await layers[0].receive(from: channel)["message"] == "after")
            #expect(layers[0].statistics.undecodable == 2)
        }
    }

    /// django/channels#999: Django purges members older than group_expiry; the layer writes them again first.
    @Test func membershipsOutliveGroupExpiry() async throws {
        let servers = try await Self.servers(1)
        try await withCoreLayers([core(servers, groupExpiry: .seconds(2))]) { layers in
            let channel = try await layers[0].newChannel()
            try await layers[0].groupAdd("chat_long", channel: channel)
            try await Task.sleep(for: .seconds(5))
            let sender = try django("group-send", servers[0].url, "chat_long", #"{"type": "chat.message", "message": "still here"}"#, groupExpiry: 2)
            #expect(try await sender.nextLine() == "SENT")
            #expect(try await layers[0].receive(from: channel)["message"] == "still here")
            let inspector = try await servers[0].inspector()
            let score = try #require(Double(try await inspector.send("ZSCORE", "asgi:group:chat_long", .string(channel)).string ?? ""))
            #expect(Date().timeIntervalSince1970 - score < 2)
            // Once discarded, the member is gone for good, refresh or not.
            try await layers[0].groupDiscard("chat_long", channel: channel)
            try await Task.sleep(for: .seconds(1))
            #expect(try await inspector.send("ZCARD", "asgi:group:chat_long").integer == 0)
        }
    }

    /// What a previous run popped but never handled goes back into the queue and is delivered.
    @Test func messagesLeftInFlightAreDeliveredOnStart() async throws {
        let servers = try await Self.servers(1)
        let layer = try RedisCoreChannelLayer(configuration: core(servers))
        let channel = try await layer.newChannel()
        let queue = "asgi" + String(CoreWire.nonLocalName(channel))
        let envelope = MessageEnvelope(randomPrefixLength: 12, encryptionKeys: [], ttl: 70)
        let inspector = try await servers[0].inspector()
        var message: Message = ["type": "left.behind"]
        message[CoreWire.channelField] = .string(channel)
        _ = try await inspector.send("ZADD", .string(queue + "$inflight"), .string(String(Date().timeIntervalSince1970)), .bytes(envelope.seal(message)))
        let runner = Task { try await layer.run() }
        defer { runner.cancel() }
        #expect(try await layer.receive(from: channel) == ["type": "left.behind"])
        #expect(try await eventually { try await inspector.send("EXISTS", .string(queue + "$inflight")).integer == 0 })
    }

    /// The receiver keeps what a group's list of names resolved to, but only while this process's inboxes
    /// stay: a channel deleted between two messages with the same list does not get the second.
    @Test func aListOfNamesResolvesAnewOnceAChannelIsGone() async throws {
        let servers = try await Self.servers(1)
        let layer = try RedisCoreChannelLayer(configuration: core(servers))
        let staying = KeepingInbox()
        let leaving = KeepingInbox()
        let first = try await layer.newChannel(prefix: "specific.", inbox: staying)
        let second = try await layer.newChannel(prefix: "specific.", inbox: leaving)
        let queue = "asgi" + String(CoreWire.nonLocalName(first))
        let envelope = MessageEnvelope(randomPrefixLength: 12, encryptionKeys: [], ttl: 70)
        let inspector = try await servers[0].inspector()
        func write(_ number: Int) async throws {
            var message: Message = ["type": "group.message", "n": .int(Int64(number))]
            message[CoreWire.channelField] = .array([.string(first), .string(second)])
            let score = String(Date().timeIntervalSince1970 + Double(number) / 1000)
            _ = try await inspector.send("ZADD", .string(queue), .string(score), .bytes(envelope.seal(message)))
        }
        func numbers(_ inbox: KeepingInbox) -> [Int] { inbox.received.withLock { $0.compactMap { $0["n"]?.int.map(Int.init) } } }
        let runner = Task { try await layer.run() }
        defer { runner.cancel() }

        for number in 0..<20 { try await write(number) }
        #expect(await eventually { numbers(staying).count >= 20 && numbers(leaving).count >= 20 })
        #expect(numbers(staying) == Array(0..<20))
        #expect(numbers(leaving) == Array(0..<20))
        await layer.deleteChannel(second)
        for number in 20..<40 { try await write(number) }
        #expect(await eventually { numbers(staying).count >= 40 })
        #expect(numbers(staying) == Array(0..<40))
        #expect(numbers(leaving) == Array(0..<20))
    }

    /// How many times Redis ran `command` since its statistics were reset (commands scripts call count too).
    static func calls(_ command: String, _ inspector: RedisConnection) async throws -> Int {
        let info = try await inspector.send("INFO", "commandstats").string ?? ""
        guard let line = info.split(whereSeparator: \.isNewline).first(where: { $0.hasPrefix("cmdstat_\(command):") }) else { return 0 }
        let calls = line.split(separator: ",").first { $0.contains("calls=") }?.split(separator: "=").last
        return calls.flatMap { Int($0) } ?? 0
    }

    /// Queue entries as Django writes them: `type` `batch.entry`, `n` from `numbers`, scores one ms apart.
    static func queueEntries(_ numbers: Range<Int>, channel: String) -> [RedisArgument] {
        let envelope = MessageEnvelope(randomPrefixLength: 12, encryptionKeys: [], ttl: 70)
        let now = Date().timeIntervalSince1970
        return numbers.flatMap { number -> [RedisArgument] in
            var message: Message = ["type": "batch.entry", "n": .int(Int64(number))]
            message[CoreWire.channelField] = .string(channel)
            return [.string(String(now + Double(number) / 1000)), .bytes(envelope.seal(message))]
        }
    }

    /// Under load a batch costs one round trip: 500 waiting entries are taken in 5 scripts of 100 (each also
    /// acknowledging the batch before), without a `BZPOPMIN`; entries that wake a blocked loop are taken by
    /// one `BZPOPMIN` and one script. Every entry is delivered once, in queue order.
    @Test func aBatchOfQueuedEntriesIsTakenInOneScriptCallAndDeliveredInOrder() async throws {
        let servers = try await Self.servers(1)
        var configuration = core(servers)
        configuration.receiveBatch = 100
        // Redis counts a BZPOPMIN when it starts; with 5 s none times out and starts again during the test.
        configuration.receiveTimeout = .seconds(5)
        let layer = try RedisCoreChannelLayer(configuration: configuration)
        let inbox = KeepingInbox()
        let channel = try await layer.newChannel(prefix: "specific.", inbox: inbox)
        let queue = "asgi" + String(CoreWire.nonLocalName(channel))
        let inspector = try await servers[0].inspector()
        _ = try await inspector.send(RedisCommand("ZADD", arguments: [.string(queue)] + Self.queueEntries(0..<500, channel: channel)))
        _ = try await inspector.send("CONFIG", "RESETSTAT")
        let runner = Task { try await layer.run() }
        defer { runner.cancel() }
        func numbers() -> [Int] { inbox.received.withLock { $0.compactMap { $0["n"]?.int.map(Int.init) } } }

        #expect(await eventually { numbers().count >= 500 })
        #expect(numbers() == Array(0..<500))
        // The loop goes on meanwhile: read BZPOPMIN first, so that a script that ran before it is counted too.
        let blocking = try await Self.calls("bzpopmin", inspector)
        let batches = try await Self.calls("zpopmin", inspector)
        #expect((5...6).contains(batches), "500 entries in batches of 100 took \(batches) scripts")
        // The loop blocks only after the sixth script found the queue empty (it may have by now).
        #expect(blocking <= batches - 5, "\(blocking) BZPOPMIN while the queue had entries")
        #expect(try await Self.calls("zrem", inspector) <= 5, "each script acknowledges the whole batch before it at once")

        // Blocked now; 50 entries at once wake it: one BZPOPMIN, then one script takes the 49 others.
        #expect(try await eventually { (try await inspector.send("INFO", "clients").string ?? "").contains("blocked_clients:1") })
        let scriptsBefore = try await Self.calls("zpopmin", inspector)
        let blockingBefore = try await Self.calls("bzpopmin", inspector)
        _ = try await inspector.send(RedisCommand("ZADD", arguments: [.string(queue)] + Self.queueEntries(500..<550, channel: channel)))
        #expect(await eventually { numbers().count >= 550 })
        #expect(numbers() == Array(0..<550))
        // BZPOPMIN first again: the script that finds the queue empty, and the BZPOPMIN after it, may run between reads.
        let blockingAfter = try await Self.calls("bzpopmin", inspector) - blockingBefore
        let scripts = try await Self.calls("zpopmin", inspector) - scriptsBefore
        #expect((1...2).contains(scripts), "the 49 entries behind the one that woke it took \(scripts) scripts")
        #expect(blockingAfter <= scripts - 1)
        // The last batch is acknowledged by the script that found the queue empty.
        #expect(try await eventually { try await inspector.send("EXISTS", .string(queue + "$inflight")).integer == 0 })
        #expect(try await inspector.send("EXISTS", .string(queue)).integer == 0)
    }

    /// A Swift `groupSend` that finds a node's queue at capacity records it for that node, which tells the
    /// group's members there (`messagesLost`) when it takes its next batch, and counts it; members of other
    /// groups are told nothing. A direct `send` over capacity is Django's `ChannelFull`, with no record.
    @Test func aGroupSendIntoAFullNodeQueueTellsThatGroupsMembersThere() async throws {
        let servers = try await Self.servers(1)
        // Not running yet: a node whose loop is behind, so its queue fills.
        let receiver = try RedisCoreChannelLayer(configuration: core(servers))
        let member = KeepingInbox()
        let bystander = KeepingInbox()
        let memberChannel = try await receiver.newChannel(prefix: "specific.", inbox: member)
        let bystanderChannel = try await receiver.newChannel(prefix: "specific.", inbox: bystander)
        try await receiver.groupAdd("chat_full", channel: memberChannel)
        try await receiver.groupAdd("chat_other", channel: bystanderChannel)
        let missedKey = CoreWire.missedKey(queue: "asgi" + String(CoreWire.nonLocalName(memberChannel)))
        let inspector = try await servers[0].inspector()

        let small = ChannelCapacities(patterns: [.init(glob: "specific.*", capacity: 3)])
        try await withCoreLayers([core(servers, capacities: small)]) { senders in
            let sender = senders[0]
            for number in 0..<5 { try await sender.groupSend(["type": "chat.message", "n": .int(Int64(number))], to: "chat_full") }
            #expect(sender.coreStatistics.overCapacity == 2 && sender.statistics.dropped == 2)
            let refused = await #expect(throws: ChannelLayerError.self) { try await sender.send(["type": "direct.message"], to: memberChannel) }
            #expect(refused?.code == .channelFull)
            let record = try await inspector.send("HGETALL", .string(missedKey)).array?.compactMap(\.string)
            #expect(record == ["chat_full", "2"])
            let ttl = try await inspector.send("TTL", .string(missedKey)).integer ?? -1
            #expect(ttl > 0 && ttl <= 60, "the record expires with the queue")

            let runner = Task { try await receiver.run() }
            defer { runner.cancel() }
            #expect(await eventually { member.received.withLock { $0.count } == 3 && member.lost.withLock { !$0.isEmpty } })
            #expect(member.received.withLock { $0.map { $0["n"] } } == [0, 1, 2])
            let reasons = member.lost.withLock { $0 }
            #expect(reasons.count == 1)
            #expect(reasons.first?.contains("2 messages for group chat_full") == true, "\(reasons)")
            #expect(receiver.statistics.missed == 2 && receiver.coreStatistics.missed == 2)
            #expect(try await inspector.send("EXISTS", .string(missedKey)).integer == 0, "taken with the batch")

            try await sender.groupSend(["type": "chat.message", "n": 9], to: "chat_other")
            #expect(await eventually { bystander.received.withLock { $0.count } == 1 })
            #expect(bystander.lost.withLock { $0.isEmpty })
            #expect(member.lost.withLock { $0.count } == 1)
            #expect(receiver.statistics.missed == 2)
        }
    }

    /// Process queues hold 10,000 entries for Swift senders (Django's 100 drops group messages for a busy
    /// node), and a `channel_capacity` pattern (`--channel-capacity`) for `specific.*` replaces it.
    @Test func processQueuesHoldTenThousandUnlessAChannelCapacityPatternSaysOtherwise() async throws {
        let server = try await RedisServer.start()
        let inspector = try await server.inspector()
        // A process that stopped reading: 150 entries, over Django's capacity of 100.
        let stalled = "specific.stalled!abc"
        let queue = "asgispecific.stalled!"
        _ = try await inspector.send(RedisCommand("ZADD", arguments: [.string(queue)] + Self.queueEntries(0..<150, channel: stalled)))
        _ = try await inspector.send("ZADD", "asgi:group:chat_busy", .string(String(Date().timeIntervalSince1970)), .string(stalled))
        for (patterns, capacity) in [([String](), 10_000), (["specific.*=120"], 120), (["http.*=5"], 10_000), (["*=1000"], 1000)] {
            var settings = RedisLayerSettings(kind: .core, urls: [server.url])
            settings.channelCapacities = try patterns.map { text throws(ChannelLayerError) in try ChannelCapacities.pattern(parsing: text) }
            let runnable = try settings.makeLayer()
            let layer = try #require(runnable.layer as? RedisCoreChannelLayer)
            #expect(layer.configuration.capacities.capacity(of: stalled) == capacity, "\(patterns)")
            #expect(layer.configuration.capacities.capacity(of: "http.request") == (patterns == ["http.*=5"] ? 5 : patterns == ["*=1000"] ? 1000 : 100))
            let runner = Task { try await runnable.run() }
            defer { runner.cancel() }
            let before = try await inspector.send("ZCARD", .string(queue)).integer ?? 0
            try await layer.groupSend(["type": "chat.message"], to: "chat_busy")
            let after = try await inspector.send("ZCARD", .string(queue)).integer ?? 0
            #expect(after - before == (capacity > before ? 1 : 0), "\(patterns)")
            #expect(layer.coreStatistics.overCapacity == (capacity > before ? 0 : 1), "\(patterns)")
        }
        #expect(try await inspector.send("HGET", .string(queue + "$missed"), "chat_busy").integer == 1)
    }

    /// The next message of `channel`, or `nil` when none came within `timeout`.
    static func receive(_ layer: RedisCoreChannelLayer, _ channel: String, within timeout: Duration) async -> Message? {
        await withTaskGroup(of: Message?.self) { tasks in
            tasks.addTask { try? await layer.receive(from: channel) }
            tasks.addTask {
                try? await Task.sleep(for: timeout)
                return nil
            }
            let first = await tasks.next() ?? nil
            tasks.cancelAll()
            return first
        }
    }

    /// A queue entry is Django's body with `__asgi_channel__` listing its channels: one named 100,000 times
    /// is still one message for it (it was 100,000, filling its queue), in the list's order.
    @Test func aQueueEntryNamingAChannelManyTimesDeliversItOnce() async throws {
        let servers = try await Self.servers(1)
        try await withCoreLayers([core(servers)]) { layers in
            let first = try await layers[0].newChannel()
            let second = try await layers[0].newChannel()
            let queue = "asgi" + String(CoreWire.nonLocalName(first))
            let envelope = MessageEnvelope(randomPrefixLength: 12, encryptionKeys: [], ttl: 70)
            var repeated: Message = ["type": "chat.repeated"]
            repeated[CoreWire.channelField] = .array([.string(first), .string(second)] + Array(repeating: .string(first), count: 100_000))
            var marker: Message = ["type": "chat.marker"]
            marker[CoreWire.channelField] = .array([.string(first)])
            let inspector = try await servers[0].inspector()
            let now = Date().timeIntervalSince1970
            _ = try await inspector.send("ZADD", .string(queue), .string(String(now)), .bytes(envelope.seal(repeated)))
            _ = try await inspector.send("ZADD", .string(queue), .string(String(now + 0.001)), .bytes(envelope.seal(marker)))
            #expect(await Self.receive(layers[0], first, within: .seconds(10))?.type == "chat.repeated")
            #expect(await Self.receive(layers[0], first, within: .seconds(10))?.type == "chat.marker")
            #expect(await Self.receive(layers[0], second, within: .seconds(10))?.type == "chat.repeated")
            #expect(await Self.receive(layers[0], second, within: .milliseconds(500)) == nil)
        }
    }

    /// `SET` on this node's queue key: Redis answers every pop with WRONGTYPE. The loop retries with a
    /// growing delay (it retried at once, ~5,500 commands a second, writing every membership again each
    /// time), and reads again once the key is gone.
    @Test func aQueueKeyOfTheWrongTypeIsRetriedSlowlyAndTheLayerRecovers() async throws {
        let servers = try await Self.servers(1)
        try await withCoreLayers([core(servers)]) { layers in
            let channel = try await layers[0].newChannel()
            for index in 0..<20 { try await layers[0].groupAdd("chat_wrong_\(index)", channel: channel) }
            try await layers[0].groupAdd("chat_wrong", channel: channel)
            let inspector = try await servers[0].inspector()
            let queue = "asgi" + String(CoreWire.nonLocalName(channel))
            _ = try await inspector.send("SET", .string(queue), "not a sorted set")
            // Commands Redis processed, and when the membership was last written (its score).
            func stats() async throws -> (commands: Int, written: String) {
                let info = try await inspector.send("INFO", "stats").string ?? ""
                let total = info.split(separator: "\r\n").first { $0.hasPrefix("total_commands_processed:") }.flatMap { Int($0.split(separator: ":")[1]) }
                let score = try await inspector.send("ZSCORE", "asgi:group:chat_wrong", .string(channel)).string
                return (try #require(total), try #require(score))
            }
            // Past the layer's current pop (receive timeout 1 s) and the first retries.
            try await Task.sleep(for: .seconds(2))
            let before = try await stats()
            let losses = layers[0].statistics.connectionLosses
            try await Task.sleep(for: .seconds(4))
            let after = try await stats()
            let perSecond = Double(after.commands - before.commands) / 4
            #expect(perSecond < 50, "\(perSecond) Redis commands a second while the queue key has the wrong type")
            #expect(after.written == before.written, "memberships written again while Redis answered")
            #expect(layers[0].statistics.connectionLosses == losses)
            #expect(layers[0].statistics.reconnections == 0)

            _ = try await inspector.send("DEL", .string(queue))
            try await layers[0].groupSend(["type": "chat.message", "message": "after the fix"], to: "chat_wrong")
            #expect(await Self.receive(layers[0], channel, within: .seconds(20))?["message"] == "after the fix")
        }
    }

    @Test func refusedCredentialsStopTheLayerWithTheReason() async throws {
        let server = try await RedisServer.start(password: "right")
        var configuration = core([server])
        configuration.hosts[0].password = "wrong"
        let layer = try RedisCoreChannelLayer(configuration: configuration)
        do {
            try await layer.run()
            Issue.record("run() returned with a wrong password")
        } catch {
            #expect(error.code == .unavailable)
            #expect(error.message.contains("queue"))
        }
    }

    @Test func invalidArgumentsAreRefused() async throws {
        let servers = try await Self.servers(1)
        try await withCoreLayers([core(servers)]) { layers in
            let channel = try await layers[0].newChannel()
            await #expect(throws: ChannelLayerError.self) { try await layers[0].groupAdd("bad group!", channel: channel) }
            await #expect(throws: ChannelLayerError.self) { try await layers[0].groupSend(["no": "type"], to: "chat_x") }
            await #expect(throws: ChannelLayerError.self) { try await layers[0].send(["type": "x", "__asgi_channel__": "y"], to: channel) }
            await #expect(throws: ChannelLayerError.self) { try await layers[0].receive(from: "someone.else!abc") }
            #expect(throws: ChannelLayerError.self) { try ChannelCapacities.pattern(parsing: "specific.*") }
            #expect(try ChannelCapacities.pattern(parsing: "http.*=7") == .init(glob: "http.*", capacity: 7))
            #expect(ChannelCapacities(defaultCapacity: 3, patterns: [.init(glob: "http.*", capacity: 7)]).capacity(of: "http.request") == 7)
        }
        #expect(throws: ChannelLayerError.self) { try RedisCoreChannelLayer(configuration: core(servers, keys: ["ok", ""])) }
    }
}
