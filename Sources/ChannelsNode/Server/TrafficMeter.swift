import Synchronization

/// Messages per second through a node, overall and per group, for the admin page and the API's reports.
///
/// Counting is an atomic add (a group message: one locked add per node, however many members get it);
/// rates are computed once a second over the last few seconds by ``sample(now:)``, not per request.
final class TrafficMeter: Sendable {
    /// Rates over the last window, in messages per second.
    struct Rates: Sendable {
        var messagesIn = 0.0
        var messagesOut = 0.0
        /// Group messages this node received, per group with traffic in the window.
        var groups: [String: Double] = [:]
    }

    private struct Sample {
        var at: ContinuousClock.Instant
        var messagesIn: Int
        var messagesOut: Int
        var groups: [String: Int]
    }

    private let messagesIn = Atomic<Int>(0)
    private let messagesOut = Atomic<Int>(0)
    private let groupMessages = Mutex<[String: Int]>([:])
    private let samples = Mutex<[Sample]>([])
    private let rates = Mutex(Rates())
    /// Samples kept: the window is this many seconds when sampled each second.
    private let window: Int

    init(window: Int = 5) {
        self.window = window
    }

    func countIn() { messagesIn.add(1, ordering: .relaxed) }
    func countOut(_ count: Int) { messagesOut.add(count, ordering: .relaxed) }
    func countGroupMessage(_ group: String) { groupMessages.withLock { $0[group, default: 0] += 1 } }

    /// The rates over the last window.
    var current: Rates { rates.withLock { $0 } }

    /// Takes a sample and recomputes the rates; called once a second.
    func sample(now: ContinuousClock.Instant = .now) {
        // Group counts are taken and reset: a group that goes quiet leaves the table with its last sample.
        let groups = groupMessages.withLock { counts in
            defer { counts = [:] }
            return counts
        }
        let sample = Sample(at: now, messagesIn: messagesIn.load(ordering: .relaxed), messagesOut: messagesOut.load(ordering: .relaxed), groups: groups)
        let computed: Rates = samples.withLock { samples in
            samples.append(sample)
            if samples.count > window + 1 { samples.removeFirst(samples.count - window - 1) }
            guard let first = samples.first, samples.count > 1 else { return Rates() }
            let seconds = (now - first.at) / .seconds(1)
            guard seconds > 0 else { return Rates() }
            var rates = Rates()
            rates.messagesIn = Double(sample.messagesIn - first.messagesIn) / seconds
            rates.messagesOut = Double(sample.messagesOut - first.messagesOut) / seconds
            // Counts of the samples after the first fall inside the window.
            var totals: [String: Int] = [:]
            for later in samples.dropFirst() {
                for (group, count) in later.groups { totals[group, default: 0] += count }
            }
            rates.groups = totals.mapValues { Double($0) / seconds }
            return rates
        }
        rates.withLock { $0 = computed }
    }

    /// Samples every second until cancelled.
    func run() async {
        while !Task.isCancelled {
            sample()
            try? await Task.sleep(for: .seconds(1))
        }
    }
}
