import ChannelsProtocol
import NIOCore
import NIOPosix
import Synchronization

/// A client of one history group that never loses a message across reconnects: it remembers the `offset`
/// and `epoch` of the last frame it got, and after any close reconnects (exponential backoff with jitter)
/// with `?recover=1&epoch=E&offset=N`, so the node replays what it missed.
///
/// Frames go to `onFrame` as JSON objects, recovery answers included (`{"type": "recovery", ...}`); a
/// frame whose offset is not beyond the last one is dropped, so the app sees each message once.
public final class RecoveringClient: Sendable {
    /// What the client knows of the group and its connection.
    public struct Status: Sendable {
        public var epoch: String?
        public var offset: Int64?
        public var connections = 0
        public var unrecoverable = 0
        public var duplicatesDropped = 0
    }

    private let addresses: [(host: String, port: Int)]
    private let path: String
    private let onFrame: @Sendable ([String: MessageValue]) -> Void
    private let state = Mutex((status: Status(), client: WebSocketClient?.none, stopped: false))

    /// Connects in the background; `onFrame` gets every new frame, in order.
    public convenience init(host: String, port: Int, path: String, onFrame: @escaping @Sendable ([String: MessageValue]) -> Void) {
        self.init(addresses: [(host, port)], path: path, onFrame: onFrame)
    }

    /// A client that moves to the next address after every close (a load balancer in front needs one).
    public init(addresses: [(host: String, port: Int)], path: String, onFrame: @escaping @Sendable ([String: MessageValue]) -> Void) {
        precondition(!addresses.isEmpty, "RecoveringClient needs an address")
        self.addresses = addresses
        self.path = path
        self.onFrame = onFrame
    }

    public var status: Status { state.withLock { $0.status } }

    /// Connects and keeps reconnecting until ``stop()``.
    public func run() async {
        var attempt = 0
        var next = 0
        while !state.withLock({ $0.stopped }) {
            let (host, port) = addresses[next % addresses.count]
            next += 1
            let (epoch, offset) = state.withLock { ($0.status.epoch, $0.status.offset) }
            var query = "recover=1"
            if let epoch, let offset { query += "&epoch=\(epoch)&offset=\(offset)" }
            do {
                let client = try await WebSocketClient.connect(
                    host: host, port: port, path: path + "?" + query,
                    onMessage: { [self] message in
                        if let text = message.text { take(text) }
                    }
                )
                attempt = 0
                state.withLock {
                    $0.client = client
                    $0.status.connections += 1
                }
                _ = await client.closed(timeout: .seconds(86_400))
            } catch {
                attempt += 1
            }
            if state.withLock({ $0.stopped }) { break }
            // 50 ms doubling to 2 s, with full jitter, so that a node's clients do not all come back at once.
            let ceiling = min(2000, 50 << min(attempt, 6))
            try? await Task.sleep(for: .milliseconds(Int.random(in: 0...max(1, ceiling))))
        }
    }

    /// Closes and stops reconnecting.
    public func stop() async {
        let client = state.withLock { state in
            state.stopped = true
            return state.client
        }
        await client?.close()
    }

    private func take(_ text: String) {
        guard case .map(let object)? = try? JSON.parse(text) else { return }
        let fields = Dictionary(uniqueKeysWithValues: object.map { ($0.key, $0.value) })
        let deliver: Bool = state.withLock { state in
            if fields["type"]?.string == "recovery" {
                if fields["recovered"]?.bool == false { state.status.unrecoverable += 1 }
                // Not recovered: continue from where the group stands now.
                if fields["recovered"]?.bool == false || state.status.offset == nil {
                    state.status.epoch = fields["epoch"]?.string
                    state.status.offset = fields["offset"]?.int
                }
                return true
            }
            guard let offset = fields["offset"]?.int, let epoch = fields["epoch"]?.string else { return true }
            if epoch == state.status.epoch, let last = state.status.offset, offset <= last {
                state.status.duplicatesDropped += 1
                return false
            }
            state.status.epoch = epoch
            state.status.offset = offset
            return true
        }
        if deliver { onFrame(fields) }
    }
}
