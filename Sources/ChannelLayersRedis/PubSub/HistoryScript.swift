import ChannelLayers
import HiredisClient

/// The Redis side of group history: one script call appends a message to the group's stream, advances its
/// offset and publishes it, so a history `groupSend` stays one round trip and offsets follow publish order.
///
/// Keys, with prefix `asgi` (the `{group}` hash tag keeps both in one Redis Cluster slot):
/// - `asgi:history:{<group>}:meta`: hash `offset` (the newest), `epoch`; lives a day after the last message,
///   so a reconnecting client that saw everything still continues after the stream expired.
/// - `asgi:history:{<group>}:stream`: stream of the newest messages (at least `--history-size`: trimmed
///   approximately, which is much cheaper than exactly), entry id
///   `<offset>-0`, field `m` = the published msgpack; expires `--history-ttl` after the last message.
///
/// When Redis loses the keys the next message starts a new epoch at offset 1, and clients holding the old
/// epoch learn that they cannot recover.
///
/// The published payload is channels_redis' msgpack map with two more keys, `__offset` and `__epoch`, that
/// the Swift layer strips before consumers see the message (Python consumers see them as extra keys).
package enum HistoryScript {
    package static let offsetKey = "__offset"
    package static let epochKey = "__epoch"

    package static func metaKey(prefix: String, group: String) -> String { "\(prefix):history:{\(group)}:meta" }
    package static func streamKey(prefix: String, group: String) -> String { "\(prefix):history:{\(group)}:stream" }

    /// KEYS: meta, stream. ARGV: channel, msgpack map, size, stream ttl (s), meta ttl (s), a new epoch, the
    /// publish command (`PUBLISH`, or `SPUBLISH` on a cluster, where the channel shares the keys' slot).
    /// Returns {offset, epoch}.
    package static let publish = #"""
        local function str(s)
          local n = #s
          if n < 32 then return string.char(0xa0 + n) .. s end
          if n < 256 then return string.char(0xd9, n) .. s end
          return string.char(0xda, math.floor(n / 256), n % 256) .. s
        end
        local function int64(v)
          local bytes = {}
          for i = 8, 1, -1 do bytes[i] = v % 256; v = math.floor(v / 256) end
          return string.char(0xd3, unpack(bytes))
        end
        local payload = ARGV[2]
        local first = string.byte(payload, 1)
        local count, body
        if first >= 0x80 and first <= 0x8f then
          count = first - 0x80; body = string.sub(payload, 2)
        elseif first == 0xde then
          count = string.byte(payload, 2) * 256 + string.byte(payload, 3); body = string.sub(payload, 4)
        else
          return redis.error_reply('ERR channels history: the message is not a small msgpack map')
        end
        local epoch = redis.call('HGET', KEYS[1], 'epoch')
        if not epoch then
          epoch = ARGV[6]
          redis.call('HSET', KEYS[1], 'epoch', epoch)
        end
        local offset = redis.call('HINCRBY', KEYS[1], 'offset', 1)
        count = count + 2
        local header
        if count <= 15 then header = string.char(0x80 + count) else header = string.char(0xde, math.floor(count / 256), count % 256) end
        local message = header .. body .. str('__offset') .. int64(offset) .. str('__epoch') .. str(epoch)
        redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], offset .. '-0', 'm', message)
        redis.call('EXPIRE', KEYS[2], ARGV[4])
        redis.call('EXPIRE', KEYS[1], ARGV[5])
        redis.call(ARGV[7] or 'PUBLISH', ARGV[1], message)
        return {offset, epoch}
        """#

    /// How long the offset and epoch outlive the last message.
    package static let metaTTLSeconds = 86_400
}
