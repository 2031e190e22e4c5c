import AsyncHTTPClient
import ChannelLayers
import Crypto
import Logging
import Metrics
import NIOCore
import NIOHTTP1
import ServiceLifecycle

/// Where webhooks go and how they are sent.
public struct WebhookConfiguration: Sendable {
    /// The receiver's URL (`http://` or `https://`).
    public var url: String
    /// The key of the body's HMAC-SHA256 (`X-Channels-Signature: sha256=<hex>`).
    public var secret: [UInt8]
    /// Events per POST at most.
    public var batchSize = 100
    /// How long one POST may take before it counts as failed and is sent again.
    public var timeout: Duration = .seconds(10)
    /// The longest wait between two attempts at a receiver that keeps failing.
    public var maxBackoff: Duration = .seconds(30)
    /// How long the sender's right to send lasts without renewal (another node takes over after it).
    public var lease: Duration = .seconds(15)

    public init(url: String, secret: [UInt8]) {
        self.url = url
        self.secret = secret
    }
}

/// A configuration that cannot work, with what to change.
public struct WebhookConfigurationError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Delivers the cluster's webhook events: one node at a time (a lease in the layer's backend) POSTs the
/// oldest events, in order, as `{"time_ms": T, "events": [...]}` signed with the shared secret, and forgets
/// them once the receiver answered 2xx. A 5xx, a timeout or a refused connection is retried with backoff
/// (the same events, so order holds); a 4xx other than 408 and 429 means the receiver will never take that
/// batch: it is dropped and counted. Events wait in the backend meanwhile, bounded there (`dropped`), so a
/// receiver that is down costs WebSocket traffic nothing.
public final class WebhookSender: Service, Sendable {
    public let configuration: WebhookConfiguration
    private let queue: any WebhookEventQueue
    private let logger: Logger
    private let sent = Counter(label: "channels_webhook_events_sent_total")
    private let failedAttempts = Counter(label: "channels_webhook_failed_attempts_total")
    private let rejected = Counter(label: "channels_webhook_events_rejected_total")
    private let dropped = Gauge(label: "channels_webhook_events_dropped")

    public init(configuration: WebhookConfiguration, queue: any WebhookEventQueue, logger: Logger) throws(WebhookConfigurationError) {
        guard configuration.url.hasPrefix("http://") || configuration.url.hasPrefix("https://") else {
            throw WebhookConfigurationError("--webhook-url must start with http:// or https:// (got \(configuration.url))")
        }
        guard !configuration.secret.isEmpty else {
            throw WebhookConfigurationError("--webhook-url needs a secret to sign with: --webhook-secret-file PATH (a file holding it)")
        }
        self.configuration = configuration
        self.queue = queue
        self.logger = logger
    }

    /// The body's signature, as the `X-Channels-Signature` header carries it: `sha256=<hex>`.
    public static func signature(of body: [UInt8], secret: [UInt8]) -> String {
        let code = HMAC<SHA256>.authenticationCode(for: body, using: SymmetricKey(data: secret))
        return "sha256=" + code.map { byte in (byte < 16 ? "0" : "") + String(byte, radix: 16) }.joined()
    }

    /// The POST body for `events` at `timeMilliseconds`.
    public static func body(_ events: [WebhookEvent], timeMilliseconds: Int64) -> [UInt8] {
        Array("{\"time_ms\":\(timeMilliseconds),\"events\":[\(events.map(\.json).joined(separator: ","))]}".utf8)
    }

    public func run() async throws {
        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        await cancelWhenGracefulShutdown {
            await self.loop(client)
        }
        try await client.shutdown()
    }

    private func loop(_ client: HTTPClient) async {
        var lastRenewal = ContinuousClock.now - .seconds(3600)
        var leading = false
        var failures = 0
        while !Task.isCancelled {
            do throws(ChannelLayerError) {
                if ContinuousClock.now - lastRenewal > configuration.lease / 3 {
                    try await queue.recordEvents(for: configuration.lease * 4)
                    let wasLeading = leading
                    leading = try await queue.lead(for: configuration.lease)
                    lastRenewal = .now
                    if leading != wasLeading { logger.info(leading ? "this node sends the cluster's webhooks" : "another node sends the cluster's webhooks") }
                    dropped.record(try await queue.dropped())
                }
                guard leading else {
                    try? await Task.sleep(for: configuration.lease / 3)
                    continue
                }
                let events = try await queue.oldest(configuration.batchSize)
                guard !events.isEmpty else {
                    try? await Task.sleep(for: .milliseconds(100))
                    continue
                }
                switch await post(events, with: client) {
                case .delivered:
                    sent.increment(by: events.count)
                    try await queue.delivered(events)
                    failures = 0
                case .rejected(let status):
                    rejected.increment(by: events.count)
                    logger.error("the webhook receiver refused events; dropped them", metadata: ["status": "\(status)", "events": "\(events.count)"])
                    try await queue.delivered(events)
                    failures = 0
                case .failed(let why):
                    failedAttempts.increment()
                    failures += 1
                    if failures == 1 || failures % 10 == 0 {
                        logger.warning("webhook delivery failed; retrying with backoff", metadata: ["error": "\(why)", "attempts": "\(failures)"])
                    }
                    try? await Task.sleep(for: backoff(after: failures))
                }
            } catch {
                failures += 1
                if failures == 1 || failures % 10 == 0 {
                    logger.warning("cannot reach the webhook queue; retrying", metadata: ["error": "\(error.message)"])
                }
                try? await Task.sleep(for: backoff(after: failures))
            }
        }
    }

    private enum Outcome {
        case delivered
        case rejected(status: UInt)
        case failed(String)
    }

    private func post(_ events: [WebhookEvent], with client: HTTPClient) async -> Outcome {
        let body = Self.body(events, timeMilliseconds: Int64(WallClock.now() * 1000))
        var request = HTTPClientRequest(url: configuration.url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "User-Agent", value: "swift-channels-webhooks")
        request.headers.add(name: "X-Channels-Signature", value: Self.signature(of: body, secret: configuration.secret))
        request.body = .bytes(ByteBuffer(bytes: body))
        do {
            let response = try await client.execute(request, timeout: .nanoseconds(Int64(configuration.timeout.components.seconds) * 1_000_000_000))
            // Read (and bound) the answer so the connection can be reused.
            _ = try? await response.body.collect(upTo: 64 * 1024)
            switch response.status.code {
            case 200..<300: return .delivered
            case 408, 429, 500...: return .failed("HTTP \(response.status.code)")
            default: return .rejected(status: response.status.code)
            }
        } catch {
            return .failed("\(error)")
        }
    }

    private func backoff(after failures: Int) -> Duration {
        let seconds = min(0.25 * Double(1 << min(failures, 10)), Double(configuration.maxBackoff.components.seconds))
        return .milliseconds(Int(seconds * 1000))
    }
}
