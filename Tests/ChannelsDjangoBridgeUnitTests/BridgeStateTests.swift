import ChannelsNode
import ChannelsProtocol
import Foundation
import Synchronization
import Testing

@testable import ChannelsDjangoBridge

/// The node side's pure state: worker choice and leases, the ASGI scope, the wire's actions, and a connection's
/// numbering, window, reordering and loss.
@Suite struct BridgeStateTests {
    @Test func aNewConnectionGoesToTheReadyWorkerWithTheFewestConnections() {
        var pool = WorkerPool()
        let now = ContinuousClock.now
        _ = pool.heard("a", state: .ready, connections: 3, lease: .seconds(3), host: "h", pid: 1, at: now)
        _ = pool.heard("b", state: .ready, connections: 1, lease: .seconds(3), host: "h", pid: 2, at: now)
        #expect(pool.heard("c", state: .draining, connections: 0, lease: .seconds(3), host: "h", pid: 3, at: now) == .joined)
        // b (1), then b again (2 with the one given), then a or b (3 each); never the draining c.
        #expect(pool.choose() == "b")
        #expect(pool.choose() == "b")
        #expect(["a", "b"].contains(pool.choose()))
        #expect(pool.choose(excluding: ["a", "b"]) == nil)
        // A heartbeat resets what was given since the last one; "gone" leaves at once; a silent worker expires.
        #expect(pool.heard("c", state: .gone, connections: 0, lease: .seconds(3), host: "h", pid: 3, at: now) == .left)
        _ = pool.heard("a", state: .ready, connections: 0, lease: .seconds(3), host: "h", pid: 1, at: now + .seconds(2))
        #expect(pool.expire(at: now + .seconds(4)) == ["b"])
        #expect(pool.readyCount == 1)
    }

    @Test func theScopeIsWhatDaphneGives() throws {
        let scope = Scope(
            path: "/ws/chat/caf%C3%A9+x/", headers: [(name: "cookie", value: "sessionid=abc"), (name: "sec-websocket-protocol", value: "v1, v2")],
            clientAddress: "[IPv4]127.0.0.1/127.0.0.1:5555", queryString: "a=1&b=two%20words"
        )
        let asgi = ASGIScope.make(scope, server: ("0.0.0.0", 8000))
        #expect(asgi["type"] == "websocket")
        #expect(asgi["path"] == "/ws/chat/café+x/")
        #expect(asgi["raw_path"] == MessageValue.bytes(Array("/ws/chat/caf%C3%A9+x/".utf8)))
        #expect(asgi["query_string"] == MessageValue.bytes(Array("a=1&b=two%20words".utf8)))
        #expect(asgi["client"] == ["127.0.0.1", 5555])
        #expect(asgi["server"] == ["0.0.0.0", 8000])
        #expect(asgi["subprotocols"] == ["v1", "v2"])
        #expect(asgi["headers"]?.array?.first == MessageValue.array([.bytes(Array("cookie".utf8)), .bytes(Array("sessionid=abc".utf8))]))
        #expect(ASGIScope.hostAndPort("[IPv6]::1:8080")! == ("::1", 8080))
        #expect(ASGIScope.decodePath("/a%2") == "/a%2")
    }

    @Test func actionsAreReadFromTheWire() {
        guard case .accept(let subprotocol, let headers, let forward)? = BridgeWire.Action(
            kind: "accept", body: ["subprotocol": "v1", "headers": [[.bytes(Array("x-a".utf8)), .bytes(Array("b".utf8))]], "forward": ["chat_message": ["message"]]]
        ) else {
            Issue.record("accept not read")
            return
        }
        #expect(subprotocol == "v1" && headers.map(\.0) == ["x-a"] && forward == ["chat_message": ["message"]])
        // Codes a server may not send become 1000; unknown kinds and shapes are refused.
        guard case .close(let code, _)? = BridgeWire.Action(kind: "close", body: ["code": 1006]) else { Issue.record("close"); return }
        #expect(code == 1000)
        #expect(BridgeWire.Action(kind: "teleport", body: [:]) == nil)
        #expect(BridgeWire.Action(kind: "group_add", body: [:]) == nil)
        guard case .groupAdd(_, let presence)? = BridgeWire.Action(kind: "group_add", body: ["group": "g", "presence": ["user": nil]]) else {
            Issue.record("group_add"); return
        }
        #expect(presence == .some(nil))
    }

    /// A connection whose items, closes and wake-ups are recorded.
    final class Recorder: Sendable {
        let items = Mutex<[MessageValue]>([])
        let closes = Mutex<[UInt16]>([])
        let wakes = Atomic<Int>(0)

        func connection(window: Int = 2) -> BridgedConnection {
            BridgedConnection(
                name: "c", worker: "w", window: window, metrics: DjangoBridgeMetrics(), emit: { item in self.items.withLock { $0.append(item) } },
                close: { code, _ in self.closes.withLock { $0.append(code) } }, wake: { self.wakes.add(1, ordering: .relaxed) }
            )
        }
    }

    @Test func eventsAreNumberedAndWaitForTheWindow() async {
        let recorder = Recorder()
        let connection = recorder.connection(window: 2)
        connection.send(.connect(scope: [:]))
        #expect(await Self.isWindowOpen(connection))
        connection.send(.receiveText("a"))
        // Two in flight, none taken: the next event waits until the application takes one.
        let returned = Atomic<Bool>(false)
        let waiting = Task {
            let step = await connection.next(wantWindow: true)
            returned.store(true, ordering: .relaxed)
            return step
        }
        try? await Task.sleep(for: .milliseconds(50))
        let returnedEarly = returned.load(ordering: .relaxed)
        #expect(!returnedEarly, "the window was full: the event must wait")
        connection.took(1)
        guard case .windowOpen = await waiting.value else { Issue.record("not woken by the take"); return }
        #expect(recorder.items.withLock { $0 }.compactMap { $0.array?[1].int } == [1, 2])
        connection.sendDone(action: 7, error: nil)
        #expect(recorder.items.withLock { $0 }.last?.array?[1] == 0)
    }

    static func isWindowOpen(_ connection: BridgedConnection) async -> Bool {
        if case .windowOpen = await connection.next(wantWindow: true) { return true }
        return false
    }

    @Test func actionsAreAppliedInOrderAndAHoleIsNoticed() async {
        let recorder = Recorder()
        let connection = recorder.connection()
        connection.received(2, .sendText("two"))
        let now = ContinuousClock.now
        #expect(connection.holeOpen(longerThan: .zero, at: now + .seconds(1)))
        connection.received(1, .sendText("one"))
        connection.received(1, .sendText("again"))
        guard case .actions(let actions) = await connection.next(wantWindow: false) else { Issue.record("no actions"); return }
        #expect(actions.map(\.seq) == [1, 2])
        #expect(!connection.holeOpen(longerThan: .zero, at: .now + .seconds(1)))
        // Once open, actions that arrive while the task is idle wake it through the mailbox, once.
        connection.opened()
        connection.received(3, .sendText("three"))
        connection.received(4, .sendText("four"))
        #expect(recorder.wakes.load(ordering: .relaxed) == 1)
        #expect(connection.takeReady().map(\.seq) == [3, 4])
    }

    @Test func aLostConnectionClosesWith1012Once() async {
        let recorder = Recorder()
        let connection = recorder.connection()
        connection.opened()
        #expect(connection.lose("worker lost"))
        #expect(!connection.lose("again"))
        #expect(recorder.closes.withLock { $0 } == [1012])
        guard case .lost(let why) = await connection.next(wantWindow: true) else { Issue.record("not lost"); return }
        #expect(why == "worker lost")
        // It tells the worker nothing more.
        connection.disconnected(code: 1012)
        #expect(recorder.items.withLock { $0 }.isEmpty)
    }

    @Test func pathPrefixesAreChecked() throws {
        #expect(try DjangoBridgeConfiguration.prefix("/ws") == "/ws/")
        #expect(throws: DjangoBridgeError.self) { try DjangoBridgeConfiguration.prefix("ws/") }
        #expect(DjangoBridgeConfiguration.connectTimeout(handshakeTimeout: .seconds(10)) == .seconds(9))
        #expect(DjangoBridgeConfiguration.connectTimeout(handshakeTimeout: .seconds(1)) == .milliseconds(750))
    }
}
