import ChannelLayers
import HiredisClient

/// The Redis side of group history: one script call appends a message to the group's stream, advances its
/// offset and publishes it, so a history `groupSend` stays one round trip and offsets follow publish order.
///
/// Keys, with prefix `asgi` (the `{group}` hash tag keeps both in one Redis Cluster slot):
/// - `asgi:history:{<group>}:meta`: hash `offset` (the newest), `epoch`, `bytes` (the size of what the
///   stream holds); lives a day after the last message, so a reconnecting client that saw everything still
///   continues after the stream expired.
/// - `asgi:history:{<group>}:stream`: stream of the newest messages, entry id `<offset>-0`, field `m` = the
///   published msgpack; at most `--history-size` messages (up to 1/16 more between trims) and
///   `--history-max-bytes` bytes, the newest always kept; expires `--history-ttl` after the last message.
///
/// When Redis loses the keys (a restart without persistence, the meta key expired, someone deleted it) the
/// next message starts a new epoch at offset 1 and drops what an old stream still held, and clients holding
/// the old epoch learn that they cannot recover.
///
/// The published payload is channels_redis' msgpack map with two more keys, `__offset` and `__epoch`, that
/// the Swift layer strips before consumers see the message (Python consumers see them as extra keys). Nodes
/// trust them only when the stream holds the same bytes at that offset (``HistoryPositionCheck``).
package enum HistoryScript {
    package static let offsetKey = "__offset"
    package static let epochKey = "__epoch"

    package static func metaKey(prefix: String, group: String) -> String { "\(prefix):history:{\(group)}:meta" }
    package static func streamKey(prefix: String, group: String) -> String { "\(prefix):history:{\(group)}:stream" }

    /// KEYS: meta, stream. ARGV: channel, msgpack map, size, stream ttl (s), meta ttl (s), a new epoch, the
    /// publish command (`PUBLISH`, or `SPUBLISH` on a cluster, where the channel shares the keys' slot;
    /// optional), max bytes (optional: callers of the earlier six-argument form keep working, unbounded by
    /// bytes). Returns {offset, epoch}.
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
        if offset == 1 then
          -- A new history: whatever the stream still holds belongs to an earlier one (and its ids would refuse XADD).
          redis.call('DEL', KEYS[2])
          redis.call('HSET', KEYS[1], 'bytes', 0)
        elseif redis.call('EXISTS', KEYS[2]) == 0 then
          redis.call('HSET', KEYS[1], 'bytes', 0)
        end
        count = count + 2
        local header
        if count <= 15 then header = string.char(0x80 + count) else header = string.char(0xde, math.floor(count / 256), count % 256) end
        local message = header .. body .. str('__offset') .. int64(offset) .. str('__epoch') .. str(epoch)
        redis.call('XADD', KEYS[2], offset .. '-0', 'm', message)
        local bytes = redis.call('HINCRBY', KEYS[1], 'bytes', #message)
        local size = tonumber(ARGV[3])
        local maxBytes = tonumber(ARGV[8]) or 9007199254740992
        local length = redis.call('XLEN', KEYS[2])
        if length > size + math.floor(size / 16) or bytes > maxBytes then
          -- Trims the oldest until both bounds hold with some room (so trims come in batches), newest kept.
          local byteTarget = maxBytes - math.floor(maxBytes / 16)
          local cut = nil
          local from = '-'
          while (length > size or bytes > byteTarget) and length > 1 do
            local batch = redis.call('XRANGE', KEYS[2], from, '+', 'COUNT', 64)
            if #batch == 0 then break end
            for _, entry in ipairs(batch) do
              if not ((length > size or bytes > byteTarget) and length > 1) then break end
              bytes = bytes - #entry[2][2]
              length = length - 1
              cut = entry[1]
            end
            from = '(' .. cut
          end
          if cut then
            redis.call('XTRIM', KEYS[2], 'MINID', (tonumber(string.match(cut, '^(%d+)')) + 1) .. '-0')
            redis.call('HSET', KEYS[1], 'bytes', bytes)
          end
        end
        redis.call('EXPIRE', KEYS[2], ARGV[4])
        redis.call('EXPIRE', KEYS[1], ARGV[5])
        redis.call(ARGV[7] or 'PUBLISH', ARGV[1], message)
        return {offset, epoch}
        """#

    /// ``publish``, run by its digest.
    package static let publishScript = RedisScript(publish)

    /// How long the offset and epoch outlive the last message.
    package static let metaTTLSeconds = 86_400
}
