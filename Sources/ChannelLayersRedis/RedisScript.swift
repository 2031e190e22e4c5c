import Crypto
import HiredisClient

/// A Lua script run by its SHA1 digest (`EVALSHA`), its source sent (`EVAL`) only to a server that does not
/// know it yet: after a restart, `SCRIPT FLUSH`, or on a cluster node that never ran it.
///
/// Redis keeps every script it ran. Sent with each call, the history's publish script (3 KB) crossed the
/// socket and was hashed by Redis on every history message.
package struct RedisScript: Sendable {
    package let source: String
    /// The lowercase hex SHA1 of ``source``, as `SCRIPT LOAD` answers it.
    package let digest: String

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

    /// Runs the script by its digest; again with its source when the server does not know it.
    /// - Throws: ``RedisError`` as `send` does; never `NOSCRIPT`.
    package func run(_ arguments: [RedisArgument], on client: any RedisCommandSender) async throws(RedisError) -> RedisReply {
        do {
            return try await client.send(call(arguments))
        } catch where Self.isNoScript(error) {
            // The script did not run: sending it with its source cannot run it twice.
            return try await client.send(loading(arguments))
        }
    }

    /// Whether an error is the server's `NOSCRIPT` answer.
    package static func isNoScript(_ error: RedisError) -> Bool {
        error.code == .errorReply && error.serverMessage?.hasPrefix("NOSCRIPT") == true
    }
}
