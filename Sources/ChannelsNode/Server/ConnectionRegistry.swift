import ChannelLayers
import ChannelsProtocol
import Synchronization

/// The live connections of a node, so that a drain can close them.
final class ConnectionRegistry: Sendable {
    private let connections = Mutex<[ObjectIdentifier: ClientConnection]>([:])

    func add(_ connection: ClientConnection) {
        connections.withLock { $0[ObjectIdentifier(connection)] = connection }
    }

    func remove(_ connection: ClientConnection) {
        _ = connections.withLock { $0.removeValue(forKey: ObjectIdentifier(connection)) }
    }

    var count: Int { connections.withLock { $0.count } }

    /// Every connection now.
    func all() -> [ClientConnection] {
        connections.withLock { Array($0.values) }
    }

    /// The connections of a control message's target: one channel, or every connection whose token's `sub` is the user.
    func matching(_ target: NodeControl.Target) -> [ClientConnection] {
        let all = connections.withLock { Array($0.values) }
        switch target {
        case .channel(let channel): return all.filter { $0.channelName == channel }
        case .user(let user): return all.filter { $0.scope.userID == user }
        }
    }

    /// Closes every connection with `code`, `perSecond` at a time, so clients reconnect elsewhere gradually.
    func closeAll(code: UInt16, reason: String, perSecond: Int, until deadline: ContinuousClock.Instant) async {
        let all = connections.withLock { Array($0.values) }
        let batch = max(1, perSecond / 20)
        for (index, connection) in all.enumerated() {
            connection.requestClose(code: code, reason: reason)
            if (index + 1) % batch == 0 {
                if ContinuousClock.now >= deadline { break }
                try? await Task.sleep(for: .milliseconds(50))
            }
        }
        // Whatever the pacing did not reach before the deadline is closed now.
        for connection in all { connection.requestClose(code: code, reason: reason) }
    }
}
