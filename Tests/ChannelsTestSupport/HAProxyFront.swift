import Foundation

/// haproxy on a free loopback port in front of a Django project: WebSocket paths to the nodes (round robin,
/// health-checked on `/readyz`), everything else to Django's HTTP server. One origin, as in production: the
/// session cookie of Django's login goes with the WebSocket.
public final class HAProxyFront: Sendable {
    public let port: Int
    private let process: PythonProcess
    private let configPath: String

    /// - Parameter nodePaths: more exact paths for the nodes (`/channels.js`).
    public static func start(webSocketPrefix: String = "/ws/", nodePaths: [String] = ["/channels.js"], nodes: [Int], django: Int) async throws -> HAProxyFront {
        guard let haproxy = ["/usr/sbin/haproxy", "/usr/bin/haproxy", "/usr/local/sbin/haproxy"].first(where: FileManager.default.isExecutableFile) else {
            throw TestSupportError("haproxy is not installed: apt-get install -y haproxy")
        }
        let port = try freePort()
        let servers = nodes.enumerated().map { "    server node\($0.offset + 1) 127.0.0.1:\($0.element) check" }.joined(separator: "\n")
        let config = """
            defaults
                mode http
                timeout connect 5s
                timeout client 60s
                timeout server 60s
                timeout tunnel 1h
                retries 3
                option redispatch
            frontend site
                bind 127.0.0.1:\(port)
                acl websocket path_beg \(webSocketPrefix)
                acl node_path path \(nodePaths.joined(separator: " "))
                use_backend nodes if websocket or node_path
                default_backend django
            backend nodes
                balance roundrobin
                option httpchk GET /readyz
                http-check expect status 200
                default-server inter 1s fall 2 rise 1
            \(servers)
            backend django
                server django 127.0.0.1:\(django)

            """
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("haproxy-\(port).cfg").path
        try config.write(toFile: path, atomically: true, encoding: .utf8)
        let process = try PythonProcess(python: haproxy, script: "-db", arguments: ["-f", path])
        let front = HAProxyFront(port: port, process: process, configPath: path)
        let up = await eventually(timeout: .seconds(10), every: .milliseconds(50)) {
            // A node behind it answers a plain GET to a WebSocket path with 426 once haproxy checked it up.
            (try? await httpGet(port: port, path: "\(webSocketPrefix)healthz-probe"))?.status == 426
        }
        guard up else { throw TestSupportError("haproxy did not answer on \(port): \(process.standardError)") }
        return front
    }

    private init(port: Int, process: PythonProcess, configPath: String) {
        self.port = port
        self.process = process
        self.configPath = configPath
    }

    deinit {
        process.terminate()
        try? FileManager.default.removeItem(atPath: configPath)
    }
}
