import ChannelsProtocol
import NIOCore
import NIOHTTP1

/// A refused or failed API request: an HTTP status and the JSON body `{"code": ..., "message": ...}`,
/// the code for programs, the message for people (what failed and what to do).
struct APIError: Error, Sendable {
    let status: HTTPResponseStatus
    let code: String
    let message: String
    var headers: HTTPHeaders = [:]

    init(_ status: HTTPResponseStatus, _ code: String, _ message: String, headers: HTTPHeaders = [:]) {
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
    }

    static func badRequest(_ code: String, _ message: String) -> APIError { APIError(.badRequest, code, message) }

    static let apiOff = APIError(
        .notFound, "api_disabled", "the HTTP API is off on this node: start it with --api-key-file PATH (or CHANNELS_API_KEYS)"
    )

    static let unauthorized = APIError(
        .unauthorized, "unauthorized", "missing or wrong API key: send Authorization: Bearer <key> with a key from the node's --api-key-file",
        headers: ["WWW-Authenticate": #"Bearer realm="channels-api""#]
    )

    static func notFound(_ what: String) -> APIError { APIError(.notFound, "not_found", what) }

    var answer: HTTPAnswer {
        var all = headers
        all.replaceOrAdd(name: "Content-Type", value: "application/json")
        all.replaceOrAdd(name: "Cache-Control", value: "no-store")
        let body: MessageValue = ["code": .string(code), "message": .string(message)]
        return HTTPAnswer(status: status, headers: all, body: ByteBuffer(string: (try? JSON.serialize(body)) ?? "{}"))
    }
}
