import Foundation
import Synchronization

/// A network partition between loopback clients and one TCP port, made with iptables: packets to and from
/// the port are dropped (no RST, no FIN), as when a network between a node and Redis fails, until ``heal()``.
///
/// Needs root (CAP_NET_ADMIN) and `iptables` (`.ci/run` installs it). The rules name an address and a port:
/// a server that listens on two loopback addresses (`127.0.0.1` and `127.0.0.2`) can be cut from the
/// processes that reach it through one while the others go on. ``heal()`` runs at deinit too, so a failing
/// test leaves no rule behind.
public final class NetworkPartition: Sendable {
    public let address: String
    public let port: Int
    private let active = Mutex(false)

    private init(address: String, port: Int) {
        self.address = address
        self.port = port
    }

    /// Drops every packet to and from `address:port` from now on.
    public static func cut(address: String = "127.0.0.1", port: Int) async throws -> NetworkPartition {
        let partition = NetworkPartition(address: address, port: port)
        try await partition.apply("-I")
        partition.active.withLock { $0 = true }
        return partition
    }

    /// Lets packets through again; TCP retransmits what it held back.
    public func heal() async throws {
        guard active.withLock({ active in defer { active = false }; return active }) else { return }
        try await apply("-D")
    }

    deinit {
        guard active.withLock({ $0 }) else { return }
        for rule in Self.rules(address: address, port: port) {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: (try? Self.iptables()) ?? "/usr/sbin/iptables")
            process.arguments = ["-D"] + rule
            try? ChildProcesses.launch { try process.run() }
            _ = ChildProcesses.waitUntilNotRunning(process, timeout: .seconds(5))
        }
    }

    private func apply(_ action: String) async throws {
        let iptables = try Self.iptables()
        for rule in Self.rules(address: address, port: port) {
            let (status, output) = try await run(iptables, [action] + rule, environment: [:])
            guard status == 0 else {
                throw TestSupportError("iptables \(action) \(rule.joined(separator: " ")) failed (\(status)): \(output); the partition tests need root and iptables")
            }
        }
    }

    private static func rules(address: String, port: Int) -> [[String]] {
        [
            ["INPUT", "-i", "lo", "-d", address, "-p", "tcp", "--dport", String(port), "-j", "DROP"],
            ["INPUT", "-i", "lo", "-s", address, "-p", "tcp", "--sport", String(port), "-j", "DROP"],
        ]
    }

    private static func iptables() throws -> String {
        for path in ["/usr/sbin/iptables", "/sbin/iptables", "/usr/bin/iptables"] where FileManager.default.isExecutableFile(atPath: path) {
            return path
        }
        throw TestSupportError("iptables is not installed: apt-get install iptables (the partition tests drop packets with it)")
    }
}
