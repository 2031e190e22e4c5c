/// The Redis side of the cluster's shared state: who is connected as which user, which groups have members
/// on which node, who is present where, and the webhook events those changes make.
///
/// Keys, with prefix `asgi` (the `{cluster}` hash tag keeps them in one Redis Cluster slot, so one script
/// call changes them together):
/// - `asgi:{cluster}:nodes`: set of the nodes whose state is counted.
/// - `asgi:{cluster}:lease:<node>`: exists while the node lives; written with every batch and heartbeat,
///   it expires a lease (30 s) after the node's last word.
/// - `asgi:{cluster}:user:<sub>`: hash, node -> the user's connections there.
/// - `asgi:{cluster}:group:<group>`: set of the nodes where the group has members.
/// - `asgi:{cluster}:node:<node>:users`, `...:groups`, `...:presence`: what the node holds, so that another
///   node can take it back out when the node dies (`presence`: field `<group>\n<channel>`, value
///   `{"user": ..., "info": ...}`).
/// - `asgi:{cluster}:webhooks`: stream of webhook events, field `e` = the event's JSON, written only while
///   `asgi:{cluster}:webhooks:on` exists (a node with `--webhook-url` keeps it); at most a bound of entries,
///   events past it counted in `asgi:{cluster}:webhooks:dropped`.
/// - `asgi:{cluster}:webhooks:sender`: the node that sends them (a lease).
package enum ClusterScripts {
    package static func base(prefix: String) -> String { "\(prefix):{cluster}:" }

    /// Shared by both scripts: `event(table)` appends a webhook event when webhooks are on.
    private static let eventFunction = #"""
        local base = KEYS[1]
        local hooks = redis.call('EXISTS', base .. 'webhooks:on') == 1
        local function event(e)
          if not hooks then return end
          local stream = base .. 'webhooks'
          if redis.call('XLEN', stream) >= tonumber(ARGV[2]) then
            redis.call('INCR', base .. 'webhooks:dropped')
            return
          end
          redis.call('XADD', stream, '*', 'e', cjson.encode(e))
        end
        local function user_of(value)
          local ok, decoded = pcall(cjson.decode, value)
          if ok and type(decoded) == 'table' and decoded.user ~= nil then return decoded.user end
          return cjson.null
        end
        """#

    /// KEYS: base. ARGV: node, max events, lease (ms), then operations, each a code and its arguments:
    /// `R` (first: the node states its whole state again: after a start, a Redis error or being taken out),
    /// `U+ user limit`, `U- user`, `G+ group`, `G- group`, `P+ group channel value`, `P- group channel`.
    /// Returns `"reaped"` (nothing done: the node is not counted and must state itself again with `R`) or
    /// one integer per `U+`: the user's connections after it, or minus their number when the limit refused
    /// it. Under `R` only what changed against what Redis held for the node makes events.
    package static let apply = eventFunction + "\n" + #"""
        local node = ARGV[1]
        local nodes = base .. 'nodes'
        local mine = base .. 'node:' .. node
        local i = 4
        local had_users, had_groups, had_presence = {}, {}, {}
        local has_users, has_groups, has_presence = {}, {}, {}
        local restating = ARGV[4] == 'R'
        if restating then
          local users = redis.call('HGETALL', mine .. ':users')
          for j = 1, #users, 2 do
            had_users[users[j]] = true
            local key = base .. 'user:' .. users[j]
            if redis.call('HINCRBY', key, node, -tonumber(users[j + 1])) <= 0 then redis.call('HDEL', key, node) end
          end
          for _, group in ipairs(redis.call('SMEMBERS', mine .. ':groups')) do
            had_groups[group] = true
            redis.call('SREM', base .. 'group:' .. group, node)
          end
          local members = redis.call('HGETALL', mine .. ':presence')
          for j = 1, #members, 2 do had_presence[members[j]] = members[j + 1] end
          redis.call('DEL', mine .. ':users', mine .. ':groups', mine .. ':presence')
          redis.call('SADD', nodes, node)
          i = 5
        elseif redis.call('SISMEMBER', nodes, node) == 0 then
          return 'reaped'
        end
        redis.call('SET', base .. 'lease:' .. node, '1', 'PX', ARGV[3])
        local results = {}
        while i <= #ARGV do
          local op = ARGV[i]
          if op == 'U+' then
            local user, limit = ARGV[i + 1], tonumber(ARGV[i + 2])
            i = i + 3
            local key = base .. 'user:' .. user
            local total = 0
            for _, n in ipairs(redis.call('HVALS', key)) do total = total + tonumber(n) end
            if limit > 0 and total >= limit then
              table.insert(results, -total)
            else
              redis.call('HINCRBY', key, node, 1)
              redis.call('HINCRBY', mine .. ':users', user, 1)
              if total == 0 and not had_users[user] then event({name = 'user_online', user = user}) end
              has_users[user] = true
              table.insert(results, total + 1)
            end
          elseif op == 'U=' then
            local user, count = ARGV[i + 1], tonumber(ARGV[i + 2])
            i = i + 3
            local key = base .. 'user:' .. user
            if redis.call('EXISTS', key) == 0 and not had_users[user] then event({name = 'user_online', user = user}) end
            redis.call('HINCRBY', key, node, count)
            redis.call('HINCRBY', mine .. ':users', user, count)
            has_users[user] = true
          elseif op == 'U-' then
            local user = ARGV[i + 1]
            i = i + 2
            local key = base .. 'user:' .. user
            if redis.call('HINCRBY', key, node, -1) <= 0 then redis.call('HDEL', key, node) end
            if redis.call('HINCRBY', mine .. ':users', user, -1) <= 0 then redis.call('HDEL', mine .. ':users', user) end
            if redis.call('EXISTS', key) == 0 then event({name = 'user_offline', user = user}) end
          elseif op == 'G+' then
            local group = ARGV[i + 1]
            i = i + 2
            local key = base .. 'group:' .. group
            if redis.call('SADD', key, node) == 1 then
              redis.call('SADD', mine .. ':groups', group)
              if redis.call('SCARD', key) == 1 and not had_groups[group] then event({name = 'group_occupied', group = group}) end
            end
            has_groups[group] = true
          elseif op == 'G-' then
            local group = ARGV[i + 1]
            i = i + 2
            local key = base .. 'group:' .. group
            if redis.call('SREM', key, node) == 1 then
              redis.call('SREM', mine .. ':groups', group)
              if redis.call('SCARD', key) == 0 then event({name = 'group_vacated', group = group}) end
            end
          elseif op == 'P+' then
            local group, channel, value = ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
            i = i + 4
            local field = group .. '\n' .. channel
            if redis.call('HSET', mine .. ':presence', field, value) == 1 and not had_presence[field] then
              event({name = 'member_added', group = group, user = user_of(value), channel = channel})
            end
            has_presence[field] = true
          elseif op == 'P-' then
            local group, channel = ARGV[i + 1], ARGV[i + 2]
            i = i + 3
            local field = group .. '\n' .. channel
            local value = redis.call('HGET', mine .. ':presence', field)
            if value then
              redis.call('HDEL', mine .. ':presence', field)
              event({name = 'member_removed', group = group, user = user_of(value), channel = channel})
            end
          else
            return redis.error_reply('ERR unknown cluster operation ' .. tostring(op))
          end
        end
        if restating then
          -- What the node held before and does not hold now: gone while Redis could not hear it.
          for field, value in pairs(had_presence) do
            if not has_presence[field] then
              local cut = string.find(field, '\n', 1, true)
              event({name = 'member_removed', group = string.sub(field, 1, cut - 1), user = user_of(value), channel = string.sub(field, cut + 1)})
            end
          end
          for group in pairs(had_groups) do
            if not has_groups[group] and redis.call('SCARD', base .. 'group:' .. group) == 0 then event({name = 'group_vacated', group = group}) end
          end
          for user in pairs(had_users) do
            if not has_users[user] and redis.call('EXISTS', base .. 'user:' .. user) == 0 then event({name = 'user_offline', user = user}) end
          end
        end
        return results
        """#

    /// KEYS: base. ARGV: the node to take out, max events. When its lease is gone and no other node took it
    /// out already: removes everything it held (user counts, group occupancy, presence) with the webhook
    /// events that makes, and returns its presence members as `{group, channel, value, ...}`; otherwise
    /// `false`. The `SREM` makes it happen once, whichever node calls first.
    package static let reap = eventFunction + "\n" + #"""
        local dead = ARGV[1]
        if redis.call('EXISTS', base .. 'lease:' .. dead) == 1 then return false end
        if redis.call('SREM', base .. 'nodes', dead) == 0 then return false end
        local held = base .. 'node:' .. dead
        local leaves = {}
        local users = redis.call('HGETALL', held .. ':users')
        for j = 1, #users, 2 do
          local key = base .. 'user:' .. users[j]
          redis.call('HDEL', key, dead)
          if redis.call('EXISTS', key) == 0 then event({name = 'user_offline', user = users[j]}) end
        end
        local members = redis.call('HGETALL', held .. ':presence')
        for j = 1, #members, 2 do
          local field, value = members[j], members[j + 1]
          local cut = string.find(field, '\n', 1, true)
          if cut then
            local group, channel = string.sub(field, 1, cut - 1), string.sub(field, cut + 1)
            event({name = 'member_removed', group = group, user = user_of(value), channel = channel})
            table.insert(leaves, group)
            table.insert(leaves, channel)
            table.insert(leaves, value)
          end
        end
        for _, group in ipairs(redis.call('SMEMBERS', held .. ':groups')) do
          local key = base .. 'group:' .. group
          if redis.call('SREM', key, dead) == 1 and redis.call('SCARD', key) == 0 then
            event({name = 'group_vacated', group = group})
          end
        end
        redis.call('DEL', held .. ':users', held .. ':groups', held .. ':presence')
        return leaves
        """#

    /// KEYS: base. ARGV: node, lease (ms). Takes or keeps the webhook sender's lease; returns 1 when this
    /// node holds it.
    package static let lead = #"""
        local key = KEYS[1] .. 'webhooks:sender'
        local holder = redis.call('GET', key)
        if holder == false or holder == ARGV[1] then
          redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
          return 1
        end
        return 0
        """#
}
