import ChannelsTestSupport
import Foundation
import Testing

@testable import ChannelsNode

/// The OpenAPI document (`Sources/ChannelsNode/API/openapi.json`) is the source of truth for the HTTP API:
/// the node serves it as it is in the repository, its operations are exactly the routes the node serves,
/// and every documented operation, called on a real node, answers one of its documented statuses with a
/// body that has the documented schema's required fields.
@Suite struct OpenAPIDocumentTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let key = "openapi-test-key-0123456789"

    static func document() throws -> [String: Any] {
        let data = try Data(contentsOf: root.appendingPathComponent("Sources/ChannelsNode/API/openapi.json"))
        return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    /// `#/components/schemas/X` or `#/components/responses/X`, followed.
    static func resolve(_ object: [String: Any], in document: [String: Any]) -> [String: Any] {
        guard let reference = object["$ref"] as? String else { return object }
        var current: Any = document
        for part in reference.dropFirst(2).split(separator: "/") { current = (current as? [String: Any])?[String(part)] as Any }
        return resolve(current as? [String: Any] ?? [:], in: document)
    }

    @Test func theDocumentListsExactlyTheRoutesTheNodeServes() throws {
        let document = try Self.document()
        #expect(document["openapi"] as? String == "3.1.0")
        let paths = try #require(document["paths"] as? [String: [String: Any]])
        var documented: Set<String> = []
        var operationIDs: [String] = []
        for (path, operations) in paths {
            for (method, operation) in operations {
                documented.insert("\(method.uppercased()) \(path)")
                operationIDs.append(((operation as? [String: Any])?["operationId"] as? String) ?? "")
            }
        }
        let served = Set(ServerAPI.operations.map { "\($0.method) \($0.path)" })
        #expect(documented == served, "documented but not served: \(documented.subtracting(served)); served but not documented: \(served.subtracting(documented))")
        #expect(Set(operationIDs).count == operationIDs.count && !operationIDs.contains(""))
    }

    @Test func everyOperationAnswersAsDocumented() async throws {
        let document = try Self.document()
        let redis = try await RedisServer.start()
        let node = try await NodeProcess.start(redis: [redis.url], arguments: ["--api-key-file", try apiKeyFile([Self.key])])
        defer { node.terminate() }
        let client = try await ChatClient.connect(port: node.port, room: "doc")

        // Served as it is in the repository, with the build's version (ChannelsNode.version, the one place a
        // release sets it) where the file names it.
        let served = try await httpRequest(port: node.port, "GET", "/api/openapi.json")
        #expect(served.status == 200)
        let file = try String(contentsOf: Self.root.appendingPathComponent("Sources/ChannelsNode/API/openapi.json"), encoding: .utf8)
        #expect(served.body == file.replacingOccurrences(of: "served as ChannelsNode.version", with: ChannelsNode.version))
        let report = try await httpRequest(port: node.port, "GET", "/api/nodes", key: Self.key)
        #expect(report.body.contains(#""version":"\#(ChannelsNode.version)""#), "\(report.body)")

        let members = try await httpRequest(port: node.port, "GET", "/api/groups/chat_doc/members", key: Self.key)
        let channel = try #require((members.json?["members"] as? [[String: Any]])?.first?["channel"] as? String)
        // A valid call for each operation: parameters and bodies from the document's own examples.
        let values = ["group": "chat_doc", "channel": channel, "user": "nobody"]
        let paths = try #require(document["paths"] as? [String: [String: [String: Any]]])
        for (template, operations) in paths.sorted(by: { $0.key < $1.key }) {
            var path = template
            for (name, value) in values { path = path.replacingOccurrences(of: "{\(name)}", with: value) }
            for (method, operation) in operations {
                // Disconnects last: they close the client the other calls use.
                if path.hasSuffix("/disconnect") { continue }
                try await check(method: method, path: path, operation: operation, document: document, port: node.port)
            }
        }
        #expect(client.messages.contains("hi"), "the documented example body was sent: \(client.frames)")
        for (template, operations) in paths where template.hasSuffix("/disconnect") {
            var path = template
            for (name, value) in values { path = path.replacingOccurrences(of: "{\(name)}", with: value) }
            for (method, operation) in operations {
                try await check(method: method, path: path, operation: operation, document: document, port: node.port)
            }
        }

        // Refusals are documented too: each route without a key answers 401, with the Error schema.
        let error = Self.resolve(["$ref": "#/components/schemas/Error"], in: document)
        for (template, operations) in paths {
            for (method, operation) in operations where (operation["security"] as? [Any])?.isEmpty != true {
                let path = template.replacingOccurrences(of: "{group}", with: "chat_doc").replacingOccurrences(of: "{channel}", with: channel)
                    .replacingOccurrences(of: "{user}", with: "nobody")
                let answer = try await httpRequest(port: node.port, method.uppercased(), path)
                #expect(answer.status == 401, "\(method) \(path)")
                #expect((operation["responses"] as? [String: Any])?["401"] != nil, "\(method) \(template) does not document 401")
                for field in error["required"] as? [String] ?? [] { #expect(answer.json?[field] != nil, "\(method) \(path): \(answer.body)") }
            }
        }
    }

    private func check(method: String, path: String, operation: [String: Any], document: [String: Any], port: Int) async throws {
        let responses = try #require(operation["responses"] as? [String: Any])
        var body: Data?
        if let request = operation["requestBody"] as? [String: Any],
            let example = ((request["content"] as? [String: Any])?["application/json"] as? [String: Any])?["example"]
        {
            body = try JSONSerialization.data(withJSONObject: example)
            if path.hasPrefix("/api/groups/"), path.hasSuffix("/send") {
                body = Data(#"{"type": "chat.message", "message": "hi"}"#.utf8)
            }
        }
        if path == "/api/events" {
            // A stream: its head is what there is to check.
            let answer = try await streamHead(port: port, path: path)
            #expect(responses[String(answer.status)] != nil && answer.contentType.hasPrefix("text/event-stream"), "GET /api/events: \(answer)")
            return
        }
        let answer = try await httpRequest(port: port, method.uppercased(), path, key: Self.key, body: body, headers: body == nil ? [:] : ["Content-Type": "application/json"])
        let documented = try #require(responses[String(answer.status)] as? [String: Any], "\(method) \(path) answered \(answer.status), not documented: \(answer.body)")
        #expect((200..<300).contains(answer.status), "\(method) \(path): \(answer.status) \(answer.body)")
        let response = Self.resolve(documented, in: document)
        guard let schema = (((response["content"] as? [String: Any])?["application/json"] as? [String: Any])?["schema"] as? [String: Any]) else { return }
        let resolved = Self.resolve(schema, in: document)
        let object = try #require(answer.json, "\(method) \(path): not a JSON object: \(answer.body)")
        for field in resolved["required"] as? [String] ?? [] {
            #expect(object[field] != nil, "\(method) \(path) lacks \(field): \(answer.body)")
        }
    }

    /// The status line and content type of a streamed answer, read from a raw socket.
    private func streamHead(port: Int, path: String) async throws -> (status: Int, contentType: String) {
        let text = try await Task.detached {
            let handle = try FileHandle.socket(port: port)
            handle.write(Data("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \(Self.key)\r\n\r\n".utf8))
            var received = Data()
            while !String(decoding: received, as: UTF8.self).contains("\r\n\r\n") {
                let chunk = handle.availableData
                if chunk.isEmpty { break }
                received.append(chunk)
            }
            try handle.close()
            return String(decoding: received, as: UTF8.self)
        }.value
        let lines = text.split(separator: "\r\n")
        let status = lines.first.flatMap { Int($0.split(separator: " ").dropFirst().first ?? "") } ?? 0
        let type = lines.first { $0.lowercased().hasPrefix("content-type:") }.map { String($0.dropFirst(13)).trimmingCharacters(in: .whitespaces) } ?? ""
        return (status, type)
    }
}

extension FileHandle {
    /// A blocking TCP connection to 127.0.0.1:`port` (for reading a stream's head in a detached task).
    static func socket(port: Int) throws -> FileHandle {
        let fd = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            Glibc.close(fd)
            throw TestSupportError("cannot connect to 127.0.0.1:\(port)")
        }
        return FileHandle(fileDescriptor: fd, closeOnDealloc: true)
    }
}
