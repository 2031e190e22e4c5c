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
        let holds = Mutex<[Bool]>([])

        func connection(window: Int = 2) -> BridgedConnection {
            BridgedConnection(
                name: "c", worker: "w", window: window, metrics: DjangoBridgeMetrics(), emit: { item in self.items.withLock { $0.append(item) } },
                close: { code, _ in self.closes.withLock { $0.append(code) } }, wake: { self.wakes.add(1, ordering: .relaxed) },
                hold: { held in self.holds.withLock { $0.append(held) } }
            )
        }

        /// `[seq, kind]` of every item sent so far.
        var sent: [String] {
            items.withLock { $0 }.compactMap { item in
                guard let fields = item.array, let seq = fields[1].int, let kind = fields[2].string else { return nil }
                return "\(seq) \(kind)"
            }
        }
    }

    @Test func submittedEventsWaitInOrderWhileTheClientIsNotRead() {
        let recorder = Recorder()
        let connection = recorder.connection(window: 2)
        connection.opened()
        #expect(connection.submit(.receiveText("1")) == .sent)
        #expect(connection.submit(.receiveText("2")) == .sent)
        // The window is full: the next ones wait in the node and reading the client is held, once.
        #expect(connection.submit(.receiveText("3")) == .waiting)
        #expect(connection.submit(.layer(["type": "chat.message"])) == .waiting)
        #expect(recorder.holds.withLock { $0 } == [true])
        #expect(recorder.sent == ["1 receive", "2 receive"])
        // The application took one: one more goes, the client stays held while something waits.
        connection.took(1)
        #expect(recorder.sent == ["1 receive", "2 receive", "3 receive"])
        #expect(recorder.holds.withLock { $0 } == [true])
        connection.took(3)
        #expect(recorder.sent == ["1 receive", "2 receive", "3 receive", "4 layer"])
        #expect(recorder.holds.withLock { $0 } == [true, false])
        // Nothing waits any more: the next one goes at once.
        #expect(connection.submit(.receiveText("5")) == .sent)
    }

    @Test func tooManyWaitingEventsOverflowAndWhatWaitsGoesBeforeTheDisconnect() {
        let recorder = Recorder()
        let connection = recorder.connection(window: 1)
        connection.opened()
        #expect(connection.submit(.receiveText("first")) == .sent)
        for _ in 0..<BridgedConnection.maxPending { #expect(connection.submit(.receiveText("x")) == .waiting) }
        #expect(connection.submit(.receiveText("one too many")) == .overflow)
        // The client leaves: what it sent reaches the application, then the disconnect.
        connection.disconnected(code: 4008)
        let sent = recorder.sent
        #expect(sent.count == BridgedConnection.maxPending + 2)
        #expect(sent.last == "\(BridgedConnection.maxPending + 2) disconnect")
        #expect(connection.submit(.receiveText("late")) == .dropped)
    }

    @Test func eventsAreNumberedAndConfirmationsAreNot() {
        let recorder = Recorder()
        let connection = recorder.connection(window: 2)
        connection.send(.connect(scope: [:]))
        connection.send(.receiveText("a"))
        connection.sendDone(action: 7, error: nil)
        #expect(recorder.sent == ["1 connect", "2 receive", "0 done"])
    }

    @Test func actionsAreAppliedInOrderAndAHoleIsNoticed() async {
        let recorder = Recorder()
        let connection = recorder.connection()
        connection.received(2, .sendText("two"))
        let now = ContinuousClock.now
        #expect(connection.holeOpen(longerThan: .zero, at: now + .seconds(1)))
        connection.received(1, .sendText("one"))
        connection.received(1, .sendText("again"))
        guard case .actions(let actions) = await connection.next() else { Issue.record("no actions"); return }
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
        guard case .lost(let why) = await connection.next() else { Issue.record("not lost"); return }
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
