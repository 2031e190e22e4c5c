import ChannelLayers
import CoreMetrics
import Metrics
import Synchronization

/// The node's metrics, through swift-metrics (the `channels-node` executable exports them with Prometheus).
///
/// Names: `channels_connections` (gauge), `channels_connections_total`, `channels_messages_in_total`,
/// `channels_messages_out_total`, `channels_slow_client_closes_total`, `channels_groups` (gauge),
/// `channels_fanout_deliveries_total`, `channels_dropped_total`, `channels_missed_total` (core layer: group
/// messages senders could not write to this node's full queue, as they recorded it; the members were told),
/// `channels_redis_connection_losses_total`,
/// `channels_redis_reconnects_total`, `channels_undecodable_total`, `channels_publish_to_deliver_seconds`
/// (histogram, for messages that carry a `sent_at` Unix time, as the chat consumer's do),
/// `channels_handshakes_refused_total` (middleware, draining, limit), `channels_connection_limit_refusals_total`,
/// `channels_rate_limit_closes_total`, `channels_publish_failures_total` (client messages the layer could not
/// publish, a Redis outage: each is a message lost), `channels_unencodable_total` (layer messages JSON cannot
/// carry, counted once per message and node), `channels_no_handler_total` (layer messages the consumer has no
/// handler for), `channels_oversized_total` (layer messages too large for a client frame, once per message and node),
/// `channels_handshake_timeouts_total`, `channels_bad_requests_total` (HTTP the parser refused),
/// `channels_pending_handshake_refusals_total` (over `maxPendingHandshakes`), `channels_accept_failures_total`
/// (accept failed, out of file descriptors), `channels_recoveries_total` (clients that connected with `?recover=1`),
/// `channels_readers_behind_total` (clients past a quarter of `--max-queued-bytes`), `channels_readers_past_grace_total`
/// (still behind after `--slow-reader-grace`), `channels_lagging_groups` (gauge: groups whose publishers wait for a
/// reader here), `channels_publishes_slowed_total` and `channels_publish_wait_seconds` (group sends that waited for
/// readers behind, here or on another node), `channels_outbound_queued_bytes` (gauge: bytes waiting in all connections' outbound buffers),
/// `channels_outbound_budget_closes_total` (clients closed because those passed `--max-node-queued-bytes`),
/// and for the HTTP API `channels_api_requests_total`, `channels_api_unauthorized_total` (401),
/// `channels_api_rate_limited_total` (429), `channels_api_messages_published_total` (messages it sent into the
/// layer), `channels_api_disconnects_total` (disconnect requests), `channels_api_bodies_refused_total` (503:
/// over `--api-max-bodies-in-flight`), `channels_api_event_streams` (gauge, open `/api/events` streams),
/// `channels_api_event_streams_refused_total` (503: over `--api-max-event-streams`) and
/// `channels_api_event_snapshots_total` (snapshots made for the streams, one per interval and watched group);
/// `channels_history_bytes_written_total` and
/// `channels_history_bytes_read_total` (group history appended and read back), `channels_layer_unavailable_refusals_total`
/// (handshakes refused with 1013 while the layer cannot reach Redis), `channels_publish_unconfirmed_total` (client
/// messages handed to Redis whose confirmation never came: they may or may not have been delivered),
/// `channels_history_restarts_total` (recovering connections told their group's history restarted) and
/// `channels_untrusted_offsets_total` (messages whose `__offset`/`__epoch` the history does not hold: delivered
/// without a position).
final class NodeMetrics: Sendable {
    let connections = Gauge(label: "channels_connections")
    let connectionsTotal = Counter(label: "channels_connections_total")
    let messagesIn = Counter(label: "channels_messages_in_total")
    let messagesOut = Counter(label: "channels_messages_out_total")
    let slowClientCloses = Counter(label: "channels_slow_client_closes_total")
    /// Clients whose outbound buffer passed the soft mark (a quarter of `--max-queued-bytes`).
    let readersBehind = Counter(label: "channels_readers_behind_total")
    /// Clients still behind after `--slow-reader-grace`: their groups' publishers went on without them.
    let readersPastGrace = Counter(label: "channels_readers_past_grace_total")
    /// Groups with a member on this node behind (their publishers, on every node, wait).
    let laggingGroups = Gauge(label: "channels_lagging_groups")
    /// Group sends that waited for readers behind, and how long each waited.
    let publishesSlowed = Counter(label: "channels_publishes_slowed_total")
    let publishWait = Timer(label: "channels_publish_wait_seconds")
    let groups = Gauge(label: "channels_groups")
    let deliveries = Counter(label: "channels_fanout_deliveries_total")
    let dropped = Counter(label: "channels_dropped_total")
    /// Group messages senders could not write to this node's full core-layer queue, as they recorded it.
    let missed = Counter(label: "channels_missed_total")
    let redisLosses = Counter(label: "channels_redis_connection_losses_total")
    let redisReconnects = Counter(label: "channels_redis_reconnects_total")
    let undecodable = Counter(label: "channels_undecodable_total")
    let publishToDeliver = Timer(label: "channels_publish_to_deliver_seconds")
    let refusedHandshakes = Counter(label: "channels_handshakes_refused_total")
    let refusedAtLimit = Counter(label: "channels_connection_limit_refusals_total")
    let userLimitRefusals = Counter(label: "channels_user_limit_refusals_total")
    let compressedConnections = Counter(label: "channels_compressed_connections_total")
    let inflatedTooLarge = Counter(label: "channels_inflated_too_large_total")
    /// Connections served as server-sent events (they count among the connections too).
    let eventStreamsOpened = Counter(label: "channels_event_streams_opened_total")
    /// Frames a consumer sent to an event-stream client that a stream cannot carry (binary).
    let eventStreamDroppedFrames = Counter(label: "channels_event_stream_dropped_frames_total")
    let rateLimitCloses = Counter(label: "channels_rate_limit_closes_total")
    let publishFailures = Counter(label: "channels_publish_failures_total")
    let unencodable = Counter(label: "channels_unencodable_total")
    let noHandler = Counter(label: "channels_no_handler_total")
    let oversized = Counter(label: "channels_oversized_total")
    let handshakeTimeouts = Counter(label: "channels_handshake_timeouts_total")
    let badRequests = Counter(label: "channels_bad_requests_total")
    let pendingHandshakeRefusals = Counter(label: "channels_pending_handshake_refusals_total")
    let acceptFailures = Counter(label: "channels_accept_failures_total")
    let recoveries = Counter(label: "channels_recoveries_total")
    let outboundBudgetCloses = Counter(label: "channels_outbound_budget_closes_total")
    let outboundQueuedBytes = Gauge(label: "channels_outbound_queued_bytes")
    let apiRequests = Counter(label: "channels_api_requests_total")
    let apiUnauthorized = Counter(label: "channels_api_unauthorized_total")
    let apiRateLimited = Counter(label: "channels_api_rate_limited_total")
    let apiPublished = Counter(label: "channels_api_messages_published_total")
    let apiDisconnects = Counter(label: "channels_api_disconnects_total")
    let historyBytesWritten = Counter(label: "channels_history_bytes_written_total")
    let historyBytesRead = Counter(label: "channels_history_bytes_read_total")
    let layerUnavailableRefusals = Counter(label: "channels_layer_unavailable_refusals_total")
    let publishUnconfirmed = Counter(label: "channels_publish_unconfirmed_total")
    let historyRestarts = Counter(label: "channels_history_restarts_total")
    let untrustedOffsets = Counter(label: "channels_untrusted_offsets_total")
    let apiBodiesRefused = Counter(label: "channels_api_bodies_refused_total")
    let apiEventStreams = Gauge(label: "channels_api_event_streams")
    let apiEventStreamsRefused = Counter(label: "channels_api_event_streams_refused_total")
    let apiEventSnapshots = Counter(label: "channels_api_event_snapshots_total")
    /// Messages per second, overall and per group, for the API's reports and the admin page.
    let traffic = TrafficMeter()

    private let open = Mutex(0)
    private let lastLayer = Mutex(ChannelLayerStatistics())

    func connectionOpened() {
        connectionsTotal.increment()
        connections.record(open.withLock { count in
            count += 1
            return count
        })
    }

    func connectionClosed() {
        connections.record(open.withLock { count in
            count -= 1
            return count
        })
    }

    var openConnections: Int { open.withLock { $0 } }

    /// Copies the layer's counters into metrics (as deltas since the last call).
    func update(from statistics: ChannelLayerStatistics) {
        let previous = lastLayer.withLock { last in
            defer { last = statistics }
            return last
        }
        deliveries.increment(by: max(0, statistics.deliveries - previous.deliveries))
        dropped.increment(by: max(0, statistics.dropped - previous.dropped))
        missed.increment(by: max(0, statistics.missed - previous.missed))
        redisLosses.increment(by: max(0, statistics.connectionLosses - previous.connectionLosses))
        redisReconnects.increment(by: max(0, statistics.reconnections - previous.reconnections))
        undecodable.increment(by: max(0, statistics.undecodable - previous.undecodable))
        historyBytesWritten.increment(by: max(0, statistics.historyBytesWritten - previous.historyBytesWritten))
        historyBytesRead.increment(by: max(0, statistics.historyBytesRead - previous.historyBytesRead))
        untrustedOffsets.increment(by: max(0, statistics.untrustedOffsets - previous.untrustedOffsets))
        groups.record(statistics.localGroups)
    }
}
