/// The workers a node knows from their heartbeats, and which one takes a new connection.
///
/// Pure state (the bridge keeps it under a lock): a worker is live while its lease runs, ready unless it said
/// it drains, and chosen by the fewest connections it reported plus those this node gave it since.
struct WorkerPool {
    struct Worker: Equatable {
        var state: State
        var connections: Int
        /// Connections this node gave it since its last heartbeat (its count does not hold them yet).
        var givenSinceReport = 0
        var lastHeard: ContinuousClock.Instant
        var lease: Duration
        var host: String
        var pid: Int
    }

    enum State: String {
        case ready
        case draining
        case gone
    }

    private(set) var workers: [String: Worker] = [:]

    /// What a heartbeat changed: a worker seen for the first time, or one that said it is gone.
    enum Change: Equatable {
        case none
        case joined
        case left
    }

    mutating func heard(
        _ channel: String, state: State, connections: Int, lease: Duration, host: String, pid: Int, at now: ContinuousClock.Instant
    ) -> Change {
        if state == .gone {
            return workers.removeValue(forKey: channel) == nil ? .none : .left
        }
        let isNew = workers[channel] == nil
        workers[channel] = Worker(state: state, connections: connections, lastHeard: now, lease: lease, host: host, pid: pid)
        return isNew ? .joined : .none
    }

    /// The ready worker with the fewest connections, not in `excluded`; counts the connection given to it.
    mutating func choose(excluding excluded: Set<String> = []) -> String? {
        let candidates = workers.filter { $0.value.state == .ready && !excluded.contains($0.key) }
        let least = candidates.map { $0.value.connections + $0.value.givenSinceReport }.min()
        guard let least, let chosen = candidates.filter({ $0.value.connections + $0.value.givenSinceReport == least }).keys.randomElement() else {
            return nil
        }
        workers[chosen]?.givenSinceReport += 1
        return chosen
    }

    /// Forgets workers whose lease ran out and returns them: lost.
    mutating func expire(at now: ContinuousClock.Instant) -> [String] {
        let lost = workers.filter { now - $0.value.lastHeard > $0.value.lease }.map(\.key)
        for channel in lost { workers.removeValue(forKey: channel) }
        return lost
    }

    var readyCount: Int { workers.values.filter { $0.state == .ready }.count }
}
