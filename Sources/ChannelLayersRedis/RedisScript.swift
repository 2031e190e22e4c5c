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
            return try await client.send(call(arguments))
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
