import ArgumentParser
import ChannelsNode
import Foundation

/// `channels-node`'s options for the HTTP API and the admin page (off unless keys are given).
struct APIOptions: ParsableArguments, Sendable {
    @Option(help: "File of HTTP API keys, one per line; turns on /api and /admin (or CHANNELS_API_KEYS, the keys, comma-separated).")
    var apiKeyFile: String?

    @Option(help: "Largest API request body in bytes; larger ones get 413 (CHANNELS_API_MAX_BODY_SIZE). [default: 1048576]")
    var apiMaxBodySize: Int?

    @Option(help: "API requests per second per key; over it 429, 0 = no limit (CHANNELS_API_RATE_LIMIT). [default: 100]")
    var apiRateLimit: Double?

    @Option(help: "API requests a key may make at once above that rate (CHANNELS_API_BURST). [default: 200]")
    var apiBurst: Int?

    @Option(help: "Bytes of API request bodies the node holds at once, over all requests; past it 503 (CHANNELS_API_MAX_BODIES_IN_FLIGHT). [default: 16777216]")
    var apiMaxBodiesInFlight: Int?

    @Option(help: "Admin event streams (/api/events) open at once on this node; past it 503 (CHANNELS_API_MAX_EVENT_STREAMS). [default: 32]")
    var apiMaxEventStreams: Int?

    /// The API's settings from these options and the environment; an unreadable key file or a weak key stops the node.
    func configuration(environment: [String: String]) throws -> ServerAPIConfiguration {
        func number<T: LosslessStringConvertible>(_ value: T?, _ name: String, _ fallback: T) throws -> T {
            if let value { return value }
            guard let text = environment[name], !text.isEmpty else { return fallback }
            guard let parsed = T(text) else { throw ValidationError("\(name)='\(text)' is not a valid number") }
            return parsed
        }
        var configuration = ServerAPIConfiguration()
        if let path = apiKeyFile {
            guard let data = FileManager.default.contents(atPath: path) else {
                throw ValidationError("cannot read the API key file \(path): check the path and its permissions")
            }
            configuration.keys = ServerAPIConfiguration.keys(fromFile: String(decoding: data, as: UTF8.self))
            guard !configuration.keys.isEmpty else { throw ValidationError("the API key file \(path) holds no key: put one key per line") }
        } else if let keys = environment["CHANNELS_API_KEYS"] {
            configuration.keys = keys.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        }
        configuration.maxBodySize = try number(apiMaxBodySize, "CHANNELS_API_MAX_BODY_SIZE", configuration.maxBodySize)
        configuration.requestsPerSecond = try number(apiRateLimit, "CHANNELS_API_RATE_LIMIT", configuration.requestsPerSecond)
        configuration.burst = try number(apiBurst, "CHANNELS_API_BURST", configuration.burst)
        configuration.maxBodiesInFlight = try number(apiMaxBodiesInFlight, "CHANNELS_API_MAX_BODIES_IN_FLIGHT", configuration.maxBodiesInFlight)
        configuration.maxEventStreams = try number(apiMaxEventStreams, "CHANNELS_API_MAX_EVENT_STREAMS", configuration.maxEventStreams)
        do {
            try configuration.validate()
        } catch {
            throw ValidationError(error.message)
        }
        return configuration
    }
}
