import ChannelsTestSupport
import Foundation
import Testing

/// What a bridged consumer sees and does reaches the client as under Daphne (`Scripts/asgi_edges.py` with a
/// real client, against the worker's test project `python/tests/testproject`): the scope, `accept` with a
/// subprotocol and headers, text and bytes, `close` with a code, 1011 after raising, 403 and 500 refusals.
@Suite struct DjangoASGITests {
    @Test func theASGIEdgesReachTheClientAsDaphneGivesThem() async throws {
        let root = ScriptedCluster.packageRoot
        let python = try PythonProcess.interpreter(packageRoot: root)
        let project = root.appendingPathComponent("python/tests").path
        let redis = try await RedisServer.start()
        let database = FileManager.default.temporaryDirectory.appendingPathComponent("asgi-\(UUID().uuidString.prefix(8)).sqlite3").path
        defer { try? FileManager.default.removeItem(atPath: database) }
        let environment = ["SWIFT_CHANNELS_TEST_REDIS": redis.url, "SWIFT_CHANNELS_TEST_DB": database, "DJANGO_SETTINGS_MODULE": "testproject.settings"]
        let migrate = try await run(
            "/bin/bash", ["-c", "cd '\(project)' && exec '\(python)' -c 'import django; django.setup(); from django.core.management import call_command; call_command(\"migrate\", verbosity=0)'"],
            environment: environment
        )
        try #require(migrate.status == 0, "\(migrate.output)")
        let script = URL(fileURLWithPath: python).deletingLastPathComponent().appendingPathComponent("swift-channels-worker").path
        let worker = try PythonProcess(
            python: "/bin/bash", script: "-c", arguments: ["cd '\(project)' && exec '\(script)' testproject.asgi:application"], environment: environment
        )
        defer { worker.terminate() }
        var line = ""
        while !line.hasPrefix("swift-channels-worker: serving") { line = try await worker.nextLine(timeout: .seconds(60)) }
        let node = try await NodeProcess.start(redis: [redis.url], arguments: ["--django-path", "/ws/"])
        defer { node.terminate() }
        try await DjangoChatProject.waitForWorkers(1, on: node)

        let client = try PythonProcess(
            python: python, script: root.appendingPathComponent("Tests/DjangoBridgeTests/Scripts/asgi_edges.py").path, arguments: [String(node.port)]
        )
        let result = try await client.nextLine(timeout: .seconds(60))
        #expect(result == "OK", "\(result)\n\(client.standardError)\nworker:\n\(worker.standardError)")
    }
}
