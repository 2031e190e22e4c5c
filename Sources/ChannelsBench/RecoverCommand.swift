import ArgumentParser
import ChannelsProtocol
import ChannelsWebSocketClient
import Foundation
import Synchronization

/// `channels-bench recover`: N clients in one history room on a node; the node is SIGKILLed while messages keep
/// coming through another node; how long until every client has recovered every message, with none lost
/// or duplicated.
struct RecoverCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "recover",
        abstract: "Time N recovering clients need to get every message after their node is SIGKILLed."
    )

    @Option(name: .customLong("node"), help: "host:port of the node the clients start on, then of the nodes they reconnect to (repeat).")
    var nodes: [String] = []
    @Option(help: "Process id of the first node: SIGKILLed once every client is connected.") var killPid: Int32
    @Option(help: "Clients.") var clients = 1000
    @Option(help: "Messages published (through the second node) from the kill on.") var messages = 200
    @Option(help: "Messages per second.") var rate = 200.0
    @Option(help: "The chat room.") var room = "recovery"
    @Flag(help: "Print JSON.") var json = false

    final class Tally: Sendable {
        let seen = Mutex<(count: Int, duplicates: Int, set: Set<String>)>((0, 0, []))
    }

    func run() async throws {
        raiseFileLimit()
        let addresses: [(host: String, port: Int)] = nodes.compactMap { node in
            let parts = node.split(separator: ":")
            guard parts.count == 2, let port = Int(parts[1]) else { return nil }
            return (String(parts[0]), port)
        }
        guard addresses.count >= 2 else { throw ValidationError("give two --node addresses: where the clients start, and where they go after the kill") }
        let path = "/ws/chat/\(room)/"
        var tallies: [Tally] = []
        var recovering: [RecoveringClient] = []
        var runners: [Task<Void, Never>] = []
        for _ in 0..<clients {
            let tally = Tally()
            let client = RecoveringClient(addresses: addresses, path: path) { frame in
                guard let message = frame["message"]?.string, message.hasPrefix("r") else { return }
                tally.seen.withLock { seen in
                    if seen.set.insert(message).inserted { seen.count += 1 } else { seen.duplicates += 1 }
                }
            }
            tallies.append(tally)
            recovering.append(client)
            runners.append(Task { await client.run() })
            if recovering.count % 100 == 0 { try? await Task.sleep(for: .milliseconds(50)) }
        }
        let deadline = ContinuousClock.now + .seconds(60)
        while recovering.contains(where: { $0.status.connections < 1 || $0.status.offset == nil }), ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
        }
        let publisher = try await WebSocketClient.connect(host: addresses[1].host, port: addresses[1].port, path: path)

        let killed = ContinuousClock.now
        kill(killPid, SIGKILL)
        let interval = Duration.seconds(1) / rate
        for index in 0..<messages {
            publisher.send(text: #"{"message": "r\#(index)"}"#)
            try await Task.sleep(for: interval)
        }
        let published = ContinuousClock.now
        let limit = ContinuousClock.now + .seconds(120)
        while tallies.contains(where: { $0.seen.withLock { $0.count } < messages }), ContinuousClock.now < limit {
            try await Task.sleep(for: .milliseconds(20))
        }
        let done = ContinuousClock.now
        let complete = tallies.filter { $0.seen.withLock { $0.count } == messages }.count
        let duplicates = tallies.reduce(0) { $0 + $1.seen.withLock { $0.duplicates } }
        let unrecoverable = recovering.reduce(0) { $0 + $1.status.unrecoverable }
        let reconnected = recovering.filter { $0.status.connections >= 2 }.count
        let lost = tallies.reduce(0) { $0 + (messages - $1.seen.withLock { $0.count }) }
        for client in recovering { await client.stop() }
        for runner in runners { runner.cancel() }
        let all = format((done - killed) / .seconds(1))
        let afterLast = format((done - published) / .seconds(1))
        if json {
            print(#"{"clients":\#(clients),"messages":\#(messages),"reconnected":\#(reconnected),"complete":\#(complete),"lost":\#(lost),"duplicates":\#(duplicates),"unrecoverable":\#(unrecoverable),"seconds_from_kill_to_all_complete":\#(all),"seconds_after_last_publish":\#(afterLast)}"#)
        } else {
            print("\(clients) clients, \(reconnected) reconnected, \(complete) got all \(messages) messages (lost \(lost), duplicates \(duplicates), unrecoverable \(unrecoverable)); \(all) s from the kill to the last client complete (\(afterLast) s after the last publish)")
        }
    }
}
