import Crypto
import HiredisClient
import Synchronization

/// A Lua script run by its SHA1 digest (`EVALSHA`), its source sent (`EVAL`) only to a server that does not
/// know it yet: after a restart, `SCRIPT FLUSH`, or on a cluster node that never ran it.
///
/// Redis keeps every script it ran. Sent with each call, the history's publish script (3 KB) crossed the
/// socket and was hashed by Redis on every history message.
///
/// A Redis user whose ACL allows `EVAL` but not `EVALSHA` (the rule SECURITY.md gave before `+evalsha`) keeps
/// working: once refused `NOPERM`, the script is sent with its source from then on.
package final class RedisScript: Sendable {
    package let source: String
    /// The lowercase hex SHA1 of ``source``, as `SCRIPT LOAD` answers it.
    package let digest: String
    /// The server refused `EVALSHA` to this user: every call goes with the source.
    private let digestRefused = Atomic<Bool>(false)
    /// The server ran an `EVALSHA` of this user's, or answered one with `NOSCRIPT` rather than `NOPERM`.
    private let digestPermitted = Atomic<Bool>(false)
    /// Whether the question of ``askWhetherDigestIsPermitted(on:)`` was sent.
    private let digestAsked = Atomic<Bool>(false)

    /// The connections the script ran on with its source, for ``enqueue(_:on:onReply:)``: one per shard. Weak,
    /// so that a new connection at the same address is never taken for one of them.
    private let loadedOn = Mutex<[LoadedOn]>([])

    private struct LoadedOn {
        weak var connection: RedisConnection?
    }

    package init(_ source: String) {
        self.source = source
        self.digest = Insecure.SHA1.hash(data: Array(source.utf8)).map { byte in
            let hex = String(byte, radix: 16)
            return byte < 16 ? "0" + hex : hex
        }.joined()
    }

    /// The call by digest: `EVALSHA digest numkeys keys... args...` (`arguments` start with the key count).
    package func call(_ arguments: [RedisArgument]) -> RedisCommand {
        RedisCommand("EVALSHA", arguments: [.string(digest)] + arguments)
    }

    /// The call with the source, which also loads the script: `EVAL source numkeys ...`.
    package func loading(_ arguments: [RedisArgument]) -> RedisCommand {
        RedisCommand("EVAL", arguments: [.string(source)] + arguments)
    }

    /// Whether calls go by digest (``call(_:)``); `false` once the server refused `EVALSHA` to this user.
    var byDigest: Bool { !digestRefused.load(ordering: .relaxed) }

    /// Runs the script by its digest; again with its source when the server does not know it, or refuses
    /// `EVALSHA` to this user (then always with the source).
    /// - Throws: ``RedisError`` as `send` does; never `NOSCRIPT`.
    package func run(_ arguments: [RedisArgument], on client: any RedisCommandSender) async throws(RedisError) -> RedisReply {
        guard byDigest else { return try await client.send(loading(arguments)) }
        do {
            let reply = try await client.send(call(arguments))
            digestPermitted.store(true, ordering: .relaxed)
            return reply
        } catch where mustSendSource(after: error) {
            // The script did not run: sending it with its source cannot run it twice.
            return try await client.send(loading(arguments))
        }
    }

    /// Sends `commands` and then the script in one pipeline, the script again with its source as ``run(_:on:)``
    /// does. Returns every reply, the script's last; error replies stay replies, as a pipeline gives them.
    package func run(after commands: [RedisCommand], _ arguments: [RedisArgument], on client: any RedisCommandSender) async throws(RedisError)
        -> [RedisReply]
    {
        var replies = try await client.pipeline(commands + [byDigest ? call(arguments) : loading(arguments)])
        if case .error(let text)? = replies.last, mustSendSource(afterReply: text) {
            // The script did not run; the commands before it did, and are not sent again.
            replies[replies.count - 1] = try await client.send(loading(arguments))
        }
        return replies
    }

    /// Queues the script on `connection` in order with what was queued before it, without waiting: by digest
    /// once it ran with its source on this very connection and the user may send `EVALSHA`, with its source
    /// until then. `onReply` runs as ``RedisConnection/enqueue(_:onReply:)`` says. Returns the error when nothing
    /// could be queued.
    ///
    /// A call queued so cannot be sent again when the server answers `NOSCRIPT` (after `SCRIPT FLUSH` on a live
    /// connection): calls queued behind it would overtake it. It fails with that error, and the connection goes
    /// back to sending the source. Whether the user may send `EVALSHA` is asked once, with a call of a digest
    /// no script has (`NOSCRIPT`: it may; `NOPERM`: it may not, and every call goes with the source).
    package func enqueue(
        _ arguments: [RedisArgument], on connection: RedisConnection, onReply: @escaping @Sendable (Result<RedisReply, RedisError>) -> Void
    ) -> RedisError? {
        let known = byDigest && digestPermitted.load(ordering: .relaxed) && loadedOn.withLock { $0.contains { $0.connection === connection } }
        return connection.enqueue(known ? call(arguments) : loading(arguments)) { [self] result in
            if case .success(let reply) = result {
                if case .error(let text) = reply {
                    if known, mustSendSource(afterReply: text) { loadedOn.withLock { $0.removeAll { $0.connection === connection || $0.connection == nil } } }
                } else if !known {
                    loadedOn.withLock { loaded in
                        loaded.removeAll { $0.connection == nil }
                        if !loaded.contains(where: { $0.connection === connection }) { loaded.append(LoadedOn(connection: connection)) }
                    }
                    if byDigest, !digestPermitted.load(ordering: .relaxed), !digestAsked.exchange(true, ordering: .relaxed) {
                        askWhetherDigestIsPermitted(on: connection)
                    }
                }
            }
            onReply(result)
        }
    }

    /// `EVALSHA` of a digest no script has: Redis checks the ACL first, so `NOPERM` says the user may not, and
    /// `NOSCRIPT` that it may.
    private func askWhetherDigestIsPermitted(on connection: RedisConnection) {
        _ = connection.enqueue(RedisCommand("EVALSHA", .string(String(repeating: "0", count: 40)), 0)) { [self] result in
            guard case .success(.error(let text)) = result else {
                // No answer (the connection failed): the next call to load the script asks again.
                if case .failure = result { digestAsked.store(false, ordering: .relaxed) }
                return
            }
            if text.hasPrefix("NOSCRIPT") {
                digestPermitted.store(true, ordering: .relaxed)
            } else {
                _ = mustSendSource(afterReply: text)
            }
        }
    }

    /// Whether a call by digest that failed with `error` is to be sent again with the source: the server does
    /// not know the script (`NOSCRIPT`), or refuses `EVALSHA` to this user (`NOPERM`, remembered).
    private func mustSendSource(after error: RedisError) -> Bool {
        guard error.code == .errorReply, let text = error.serverMessage else { return false }
        return mustSendSource(afterReply: text)
    }

    /// ``mustSendSource(after:)`` for an error reply's text (a pipeline's reply).
    private func mustSendSource(afterReply text: String) -> Bool {
        if text.hasPrefix("NOSCRIPT") { return true }
        if text.hasPrefix("NOPERM"), text.lowercased().contains("evalsha") {
            digestRefused.store(true, ordering: .relaxed)
            return true
        }
        return false
    }
}
