import CoreMetrics
import Metrics
import Synchronization

/// The Django bridge's metrics, through swift-metrics beside the node's own:
/// `channels_django_connections` (gauge, open bridged connections), `channels_django_connections_total`,
/// `channels_django_workers` (gauge, ready workers this node hears), `channels_django_events_total` (events sent to
/// workers), `channels_django_event_seconds` (histogram: from an event's send until its application took it),
/// `channels_django_worker_losses_total` (workers whose heartbeats stopped), `channels_django_lost_connections_total`
/// (connections closed with 1012 because their worker was lost or their events were), `channels_django_denied_total`
/// (handshakes the application refused: 403 or 500), `channels_django_unavailable_total` (handshakes refused
/// because no worker answered: 503 or 504) and `channels_django_slow_closed_total` (connections closed with 4008
/// because their worker fell more than a window plus 1024 events behind them).
final class DjangoBridgeMetrics: Sendable {
    let connections = Gauge(label: "channels_django_connections")
    let connectionsTotal = Counter(label: "channels_django_connections_total")
    let workers = Gauge(label: "channels_django_workers")
    let events = Counter(label: "channels_django_events_total")
    let eventLatency = Timer(label: "channels_django_event_seconds")
    let workerLosses = Counter(label: "channels_django_worker_losses_total")
    let lostConnections = Counter(label: "channels_django_lost_connections_total")
    let denied = Counter(label: "channels_django_denied_total")
    let unavailable = Counter(label: "channels_django_unavailable_total")
    let slowClosed = Counter(label: "channels_django_slow_closed_total")
    private let open = Atomic<Int>(0)

    func connectionOpened() {
        connectionsTotal.increment()
        connections.record(open.add(1, ordering: .relaxed).newValue)
    }

    func connectionClosed() {
        connections.record(open.subtract(1, ordering: .relaxed).newValue)
    }
}
