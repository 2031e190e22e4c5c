import Foundation

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// An HTTP answer as tests read it.
public struct HTTPResult: Sendable {
    public let status: Int
    public let headers: [String: String]
    public let body: String

    /// The body parsed as a JSON object (`nil` when it is not one).
    public var json: [String: Any]? { try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any] }

    /// A header's value (case-insensitive).
    public func header(_ name: String) -> String? {
        headers.first { $0.key.lowercased() == name.lowercased() }?.value
    }
}

/// Any HTTP request to 127.0.0.1:`port`, with a bearer key if given.
public func httpRequest(
    port: Int, _ method: String, _ path: String, key: String? = nil, body: Data? = nil, headers: [String: String] = [:], timeout: TimeInterval = 10
) async throws -> HTTPResult {
    var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)\(path)")!)
    request.httpMethod = method
    request.timeoutInterval = timeout
    if let key { request.setValue("Bearer \(key)", forHTTPHeaderField: "Authorization") }
    for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
    request.httpBody = body
    let (data, response) = try await URLSession.shared.data(for: request)
    let http = response as? HTTPURLResponse
    var all: [String: String] = [:]
    for (name, value) in http?.allHeaderFields ?? [:] { all["\(name)"] = "\(value)" }
    return HTTPResult(status: http?.statusCode ?? 0, headers: all, body: String(decoding: data, as: UTF8.self))
}

/// The same, with a JSON text body.
public func httpRequest(port: Int, _ method: String, _ path: String, key: String? = nil, json: String) async throws -> HTTPResult {
    try await httpRequest(port: port, method, path, key: key, body: Data(json.utf8), headers: ["Content-Type": "application/json"])
}

/// A file holding API keys, one per line, for `--api-key-file`.
public func apiKeyFile(_ keys: [String]) throws -> String {
    let path = NSTemporaryDirectory() + "channels-api-keys-\(UUID().uuidString)"
    try (["# test keys"] + keys).joined(separator: "\n").write(toFile: path, atomically: true, encoding: .utf8)
    return path
}
