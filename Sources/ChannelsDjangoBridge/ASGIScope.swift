import ChannelsNode
import ChannelsProtocol
import OrderedCollections

/// The ASGI `websocket` scope of a connection, as Daphne and uvicorn give it to an application.
enum ASGIScope {
    /// - Parameter server: the node's listening address (`[host, port]` in the scope).
    static func make(_ scope: Scope, server: (host: String, port: Int)) -> MessageValue {
        let headers: [MessageValue] = scope.headers.map { .array([.bytes(Array($0.name.utf8)), .bytes(Array($0.value.utf8))]) }
        let subprotocols: [MessageValue] = scope.headers.filter { $0.name == "sec-websocket-protocol" }
            .flatMap { $0.value.split(separator: ",") }
            .map { String($0.drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" }.reversed()) }
            .filter { !$0.isEmpty }
            .map { .string($0) }
        var fields: OrderedDictionary<String, MessageValue> = [
            "type": "websocket",
            "asgi": ["version": "3.0", "spec_version": "2.3"],
            "http_version": "1.1",
            "scheme": "ws",
            "path": .string(decodePath(scope.path)),
            "raw_path": .bytes(Array(scope.path.utf8)),
            "query_string": .bytes(Array(scope.queryString.utf8)),
            "root_path": "",
            "headers": .array(headers),
            "server": [.string(server.host), .int(Int64(server.port))],
            "subprotocols": .array(subprotocols),
        ]
        if let client = scope.clientAddress.flatMap(hostAndPort) {
            fields["client"] = [.string(client.host), .int(Int64(client.port))]
        }
        return .map(fields)
    }

    /// Percent-decodes a path (`+` stays `+`, unlike a query); bytes that are not UTF-8 become U+FFFD.
    static func decodePath(_ path: String) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(path.utf8.count)
        var iterator = path.utf8.makeIterator()
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "%") else {
                bytes.append(byte)
                continue
            }
            guard let high = iterator.next() else {
                bytes.append(byte)
                break
            }
            guard let low = iterator.next() else {
                bytes += [byte, high]
                break
            }
            if let value = UInt8(String(decoding: [high, low], as: UTF8.self), radix: 16) {
                bytes.append(value)
            } else {
                bytes += [byte, high, low]
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// `127.0.0.1` and `5555` from NIO's `[IPv4]127.0.0.1/127.0.0.1:5555` (or `[IPv6]::1:5555`).
    static func hostAndPort(_ description: String) -> (host: String, port: Int)? {
        var address = Substring(description)
        if address.hasPrefix("["), let end = address.firstIndex(of: "]") { address = address[address.index(after: end)...] }
        if let slash = address.lastIndex(of: "/") { address = address[address.index(after: slash)...] }
        guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]) else { return nil }
        return (String(address[..<colon]), port)
    }
}
