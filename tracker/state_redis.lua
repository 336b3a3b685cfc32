-- The tracker's swarm state in Redis (tracker/state_redis.c; docs/protocol.md,
-- "Tracker state"). One script, loaded once per connection (SCRIPT LOAD)
-- and run with EVALSHA; ARGV[1] names the operation, ARGV[2] is the key
-- prefix, ARGV[3] the time in milliseconds ("" = Redis's own clock, which
-- is what replicas use: their monotonic clocks differ; tests pass their
-- own). A script runs atomically, so two replicas never interleave inside
-- an announce: the lease grant and the first-hash-wins rule need nothing
-- more. Every check that can refuse a request runs before the first write,
-- since Redis does not roll a script back.
--
-- Keys, for prefix P and swarm digest D:
--   P s:D    hash: size, plen, pieces, table, nhashed, nleased, npeers,
--            next_uid, hash_len, nsu (suspect marks in su:D), nconf
--            (confirmed hashes), creator (the key of the agent that made
--            the swarm: 8 bytes, tracker_fnv1a of its id)
--   P log:D  string: the hash log, entries of a 4-byte big-endian piece
--            index and the raw hash, in the order they were accepted
--   P rl:D   string: the reporters' keys (8 bytes each), in log order
--   P hb:D   bitmap: piece hashed
--   P cf:D   bitmap: piece hash confirmed (vouched for by an agent that
--            completed the blob and did not report that hash itself)
--   P busy:D bitmap: piece hashed or leased (what a grant skips)
--   P lk:D   hash: piece index -> uid of the peer holding its lease
--   P p:D    hash: agent -> msgpack(uid, addr, lease active, first, count,
--            left, granted, report); written only when one changes
--   P pz:D   zset: "agent\naddr" -> hand-out rank: complete * 2^37 +
--            have * 2^20 + 20 random bits, so the rank alone says complete
--            and have, and one ZREVRANGE is the whole hand-out
--   P su:D   hash: suspect address -> "<marked until (ms)>:<reporters>",
--            the keys (8 bytes each) of at most 4 distinct reporters
--   P swarms zset: D -> creation time (the listing order)
--   P empty  zset: D -> when a peerless swarm may be dropped
--   P peers  zset: "D\nagent" -> last announce (peer expiry)
--   P leases zset: "D\nagent" -> lease expiry
--   P sus    zset: D -> when its first suspect mark runs out
--   P cr:K   set: the swarms the agent with key K (hex) made
--
-- The cluster side (agent inventory and preheat jobs), which each replica
-- also keeps in its memory and syncs every second:
--   P agents      hash: node name -> "<remote>\n<registration JSON>"
--   P agents:seen zset: node name -> last heartbeat (any replica's)
--   P job:ID      hash: owner (replica id), version, json (jobs_json.c);
--                 a finished job's key expires after job-keep
--   P jobs        zset: ID -> version of its last write
--   P jobs:ver    counter of job writes; P jobs:id counter of job ids
--   P tracker:RID a replica alive (expires unless renewed)
--
-- A peer that stops announcing is handed out until the expiry pass after
-- its peer_timeout (at most a second more than the memory state does).

local op = ARGV[1]
local P = ARGV[2]
local now
if ARGV[3] ~= '' then
    now = tonumber(ARGV[3])
else
    local t = redis.call('TIME')
    now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local RANK_COMPLETE = 137438953472 -- 2^37: above any have * 2^20 + 2^20
local RANK_HAVE = 1048576          -- 2^20: room for the random tie-break
local SUSPECT_REPORTERS = 4        -- TRACKER_SUSPECT_REPORTERS
local MAX_SUSPECTS = 256           -- TRACKER_MAX_SUSPECTS

local function keys(d)
    return {
        s = P .. 's:' .. d, log = P .. 'log:' .. d, hb = P .. 'hb:' .. d,
        busy = P .. 'busy:' .. d, lk = P .. 'lk:' .. d, p = P .. 'p:' .. d,
        pz = P .. 'pz:' .. d, su = P .. 'su:' .. d, rl = P .. 'rl:' .. d, cf = P .. 'cf:' .. d,
    }
end

-- The set of swarms an agent made, by its 8-byte key.
local function creator_key(akey)
    return P .. 'cr:' .. string.format('%02x%02x%02x%02x%02x%02x%02x%02x', string.byte(akey, 1, 8))
end

-- A suspect mark: until (ms) and its reporters' keys.
local function su_parse(v)
    local c = string.find(v, ':', 1, true)
    if not c then
        return tonumber(v), ''
    end
    return tonumber(string.sub(v, 1, c - 1)), string.sub(v, c + 1)
end

-- Piece i's bit in a bitmap string (Redis bit order: 0 is the top bit).
local function bit_at(bits, i)
    local b = string.byte(bits, math.floor(i / 8) + 1) or 0
    return bit.band(bit.rshift(b, 7 - i % 8), 1)
end

-- A peer record: a table with named fields.
local function rec_load(k, agent)
    local raw = redis.call('HGET', k.p, agent)
    if not raw then
        return nil
    end
    local uid, addr, lact, lfirst, lcount, lleft, lgranted, lreport = cmsgpack.unpack(raw)
    return {uid = uid, addr = addr, lact = lact, lfirst = lfirst, lcount = lcount, lleft = lleft,
            lgranted = lgranted, lreport = lreport, raw = raw}
end

local function rec_store(k, agent, r)
    local raw = cmsgpack.pack(r.uid, r.addr, r.lact, r.lfirst, r.lcount, r.lleft, r.lgranted,
        r.lreport)
    if raw ~= r.raw then
        redis.call('HSET', k.p, agent, raw)
        r.raw = raw
    end
end

local function lease_expiry(r, lease_timeout)
    return math.max(r.lgranted, r.lreport) + lease_timeout
end

-- The swarm's counters live in its hash; m caches them during a call.
local function meta_load(k)
    local v = redis.call('HMGET', k.s, 'size', 'plen', 'pieces', 'table', 'nhashed', 'nleased',
        'npeers', 'hash_len', 'nsu', 'nconf')
    if not v[1] then
        return nil
    end
    local m = {size = tonumber(v[1]), plen = tonumber(v[2]), pieces = tonumber(v[3]),
               table = v[4], nhashed = tonumber(v[5]), nleased = tonumber(v[6]),
               npeers = tonumber(v[7]), hash_len = tonumber(v[8]), nsu = tonumber(v[9]) or 0,
               nconf = tonumber(v[10]) or 0}
    m.nhashed0, m.nleased0, m.npeers0, m.nconf0 = m.nhashed, m.nleased, m.npeers, m.nconf
    return m
end

local function meta_store(k, m)
    if m.nhashed ~= m.nhashed0 or m.nleased ~= m.nleased0 or m.npeers ~= m.npeers0 or
        m.nconf ~= m.nconf0 then
        redis.call('HSET', k.s, 'nhashed', m.nhashed, 'nleased', m.nleased, 'npeers', m.npeers,
            'nconf', m.nconf)
    end
end

-- Frees one leased piece of r.
local function lease_drop_piece(k, m, r, idx)
    redis.call('HDEL', k.lk, idx)
    redis.call('SETBIT', k.busy, idx, 0)
    m.nleased = m.nleased - 1
    r.lleft = r.lleft - 1
    if r.lleft == 0 then
        r.lact = 0
    end
end

-- Frees every piece still leased to r.
local function lease_release(d, k, m, agent, r)
    if r.lact == 0 then
        return
    end
    local i = r.lfirst
    while i < r.lfirst + r.lcount and r.lleft > 0 do
        if tonumber(redis.call('HGET', k.lk, i)) == r.uid then
            lease_drop_piece(k, m, r, i)
        end
        i = i + 1
    end
    r.lact = 0
    r.lleft = 0
    redis.call('ZREM', P .. 'leases', d .. '\n' .. agent)
end

-- A peerless swarm with hashes is kept keep_ms; without, it goes at the
-- next expiry pass.
local function mark_empty(d, m, keep_ms)
    redis.call('ZADD', P .. 'empty', m.nhashed > 0 and now + keep_ms or now, d)
end

local function peer_remove(d, k, m, agent, r, keep_ms)
    lease_release(d, k, m, agent, r)
    redis.call('HDEL', k.p, agent)
    redis.call('ZREM', k.pz, agent .. '\n' .. r.addr)
    redis.call('ZREM', P .. 'peers', d .. '\n' .. agent)
    m.npeers = m.npeers - 1
    if m.npeers == 0 then
        mark_empty(d, m, keep_ms)
    end
end

local function swarm_delete(d)
    local k = keys(d)
    local agents = redis.call('HKEYS', k.p)
    for _, a in ipairs(agents) do
        redis.call('ZREM', P .. 'peers', d .. '\n' .. a)
        redis.call('ZREM', P .. 'leases', d .. '\n' .. a)
    end
    local creator = redis.call('HGET', k.s, 'creator')
    if creator and #creator == 8 then
        redis.call('SREM', creator_key(creator), d)
    end
    redis.call('DEL', k.s, k.log, k.hb, k.busy, k.lk, k.p, k.pz, k.su, k.rl, k.cf)
    redis.call('ZREM', P .. 'swarms', d)
    redis.call('ZREM', P .. 'sus', d)
    redis.call('ZREM', P .. 'empty', d)
end

local function be32(s, pos)
    local a, b, c, e = string.byte(s, pos, pos + 3)
    return ((a * 256 + b) * 256 + c) * 256 + e
end

-- --- announce -----------------------------------------------------------------

local function announce()
    local d, size, agent, addr = ARGV[4], tonumber(ARGV[5]), ARGV[6], ARGV[7]
    local stopped = ARGV[8] == '1'
    local have, complete, want_lease = tonumber(ARGV[9]), tonumber(ARGV[10]), ARGV[11] == '1'
    local hashes, failed, bad = ARGV[12], ARGV[13], ARGV[14]
    local has_from, from_req, table_req = ARGV[15] == '1', tonumber(ARGV[16]), ARGV[17]
    local new_plen, new_pieces, hash_len = tonumber(ARGV[18]), tonumber(ARGV[19]),
        tonumber(ARGV[20])
    local lease_pieces, lease_timeout = tonumber(ARGV[21]), tonumber(ARGV[22])
    local peer_timeout, keep_ms = tonumber(ARGV[23]), tonumber(ARGV[24])
    local bad_peer_ms, bad_peer_off = tonumber(ARGV[25]), ARGV[26] == '1'
    local max_swarms, max_swarm_peers = tonumber(ARGV[27]), tonumber(ARGV[28])
    local max_peers, slice_max = tonumber(ARGV[29]), tonumber(ARGV[30])
    local new_table, rnd = ARGV[31], tonumber(ARGV[32])
    local akey, completed = ARGV[33], ARGV[34] == '1'
    local quorum, max_per_agent = tonumber(ARGV[35]), tonumber(ARGV[36])
    local conf_seen = tonumber(ARGV[37]) -- nil: the agent does not keep them
    local lease_spread = tonumber(ARGV[38])

    local k = keys(d)
    local m = meta_load(k)
    local out = {hashes_accepted = 0, hashes_ignored = 0, leases_released = 0, suspect_ms = 0,
                 granted = 0, expired = 0, new_swarm = 0, dpeers = 0, dswarms = 0}
    local bad_addrs = {}
    if bad ~= '' then
        for a in string.gmatch(bad, '[^\n]+') do
            bad_addrs[#bad_addrs + 1] = a
        end
    end
    local he = 4 + hash_len

    -- Checks that need the swarm (or the one it would make); nothing is
    -- written before they pass.
    local pieces = new_pieces
    if m then
        if m.size ~= size then
            return {1, string.format("size: %d does not match the swarm's size %d", size, m.size)}
        end
        if m.hash_len ~= hash_len then
            return {1, 'hashes: the swarm keeps hashes of another length'}
        end
        pieces = m.pieces
    end
    if have > pieces then
        return {1, string.format("have: %d is more than the blob's %d pieces", have, pieces)}
    end
    for pos = 1, #hashes, he do
        local idx = be32(hashes, pos)
        if idx >= pieces then
            return {1, string.format('hashes: piece %d out of range (the blob has %d pieces)',
                idx, pieces)}
        end
    end
    for pos = 1, #failed, 4 do
        local idx = be32(failed, pos)
        if idx >= pieces then
            return {1, string.format(
                'lease_failed: piece %d out of range (the blob has %d pieces)', idx, pieces)}
        end
    end

    local function slice()
        local from = 0
        if has_from and m.table == table_req and from_req <= m.nhashed then
            from = from_req
        end
        local to = m.nhashed
        if has_from and to - from > slice_max then
            to = from + slice_max
        end
        local s = ''
        if to > from then
            s = redis.call('GETRANGE', k.log, from * he, to * he - 1)
        end
        return to, s
    end

    local function mark_suspects()
        if bad_peer_off or #bad_addrs == 0 then
            return
        end
        local untilt = now + bad_peer_ms
        for _, a in ipairs(bad_addrs) do
            -- A mark records who reported it: the address is hidden once
            -- quorum distinct agents did (tracker_suspects_mark).
            local raw = redis.call('HGET', k.su, a)
            local cur, reps = 0, ''
            if raw then
                cur, reps = su_parse(raw)
            end
            local known = false
            for pos = 1, #reps, 8 do
                known = known or string.sub(reps, pos, pos + 7) == akey
            end
            if not known and #reps < 8 * SUSPECT_REPORTERS then
                reps = reps .. akey
            end
            if cur < untilt then
                cur = untilt
            end
            local v = string.format('%.0f', cur) .. ':' .. reps
            if v ~= raw then
                redis.call('HSET', k.su, a, v)
            end
        end
        -- At the cap the marks expiring first give way.
        local n = redis.call('HLEN', k.su)
        redis.call('ZADD', P .. 'sus', 'LT', untilt, d)
        if n > MAX_SUSPECTS then
            local all = redis.call('HGETALL', k.su)
            local marks = {}
            for i = 1, #all, 2 do
                marks[#marks + 1] = {all[i], (su_parse(all[i + 1]))}
            end
            table.sort(marks, function(x, y) return x[2] < y[2] end)
            for i = 1, n - MAX_SUSPECTS do
                redis.call('HDEL', k.su, marks[i][1])
            end
            n = MAX_SUSPECTS
        end
        redis.call('HSET', k.s, 'nsu', n)
        m.nsu = n
        out.suspect_ms = bad_peer_ms
    end

    local function reply(peers, lease)
        local to, s = 0, ''
        local plen, pieces, tbl, nh = new_plen, new_pieces, '0', 0
        if m then
            to, s = slice()
            plen, pieces, tbl, nh = m.plen, m.pieces, m.table, m.nhashed
        end
        local lease_s, has_lease, lease_exp = '', 0, 0
        if lease then
            has_lease = 1
            lease_s = lease[1]
            lease_exp = lease[2]
        end
        -- The confirmed flags, unless the agent holds these already
        -- (tracker_confirmed_known).
        local nconf, cf = 0, ''
        if m and m.nconf > 0 then
            nconf = m.nconf
            if not (has_from and conf_seen and m.table == table_req and conf_seen == nconf) then
                cf = redis.call('GET', k.cf) or ''
            end
        end
        return {0, '', plen, pieces, tbl, nh, to, s, out.new_swarm, has_lease, lease_s, lease_exp,
                out.hashes_accepted, out.hashes_ignored, out.leases_released, out.suspect_ms,
                out.granted, out.expired, peers or {}, out.dpeers, out.dswarms, nconf, cf}
    end

    if stopped then
        -- Leaving: nothing is created for it; its reports still count.
        if not m then
            return reply(nil, nil)
        end
        mark_suspects()
        local r = rec_load(k, agent)
        if r then
            peer_remove(d, k, m, agent, r, keep_ms)
            out.dpeers = -1
        end
        meta_store(k, m)
        return reply(nil, nil)
    end

    local r = m and rec_load(k, agent) or nil
    local victim = nil
    if not m then
        -- One agent may not fill the table: it starts at most
        -- max_per_agent swarms that it is still in.
        local made = redis.call('SMEMBERS', creator_key(akey))
        local n = 0
        for _, sd in ipairs(made) do
            if redis.call('HEXISTS', P .. 'p:' .. sd, agent) == 1 then
                n = n + 1
            end
        end
        if n >= max_per_agent then
            return {3, string.format('digest: agent %s started %d swarms it is still in (limit %d)',
                string.sub(agent, 1, 64), n, max_per_agent)}
        end
    end
    if not m and redis.call('ZCARD', P .. 'swarms') >= max_swarms then
        local v = redis.call('ZRANGE', P .. 'empty', 0, 0)
        if #v == 0 then
            return {2, string.format('digest: too many swarms (limit %d)', max_swarms)}
        end
        victim = v[1]
    end
    if m and not r and m.npeers >= max_swarm_peers then
        return {2, string.format('agent: too many peers in this swarm (limit %d)',
            max_swarm_peers)}
    end

    -- From here on, writes.
    if victim then
        swarm_delete(victim)
        out.dswarms = -1
    end
    if not m then
        redis.call('HSET', k.s, 'size', size, 'plen', new_plen, 'pieces', new_pieces, 'table',
            new_table, 'nhashed', 0, 'nleased', 0, 'npeers', 0, 'next_uid', 0, 'hash_len',
            hash_len, 'nconf', 0, 'creator', akey)
        redis.call('SETBIT', k.hb, new_pieces - 1, 0)
        redis.call('SETBIT', k.busy, new_pieces - 1, 0)
        redis.call('ZADD', P .. 'swarms', now, d)
        redis.call('SADD', creator_key(akey), d)
        m = {size = size, plen = new_plen, pieces = new_pieces, table = new_table, nhashed = 0,
             nleased = 0, npeers = 0, hash_len = hash_len, nhashed0 = 0, nleased0 = 0,
             npeers0 = 0, nsu = 0, nconf = 0, nconf0 = 0}
        out.new_swarm = 1
        out.dswarms = out.dswarms + 1
    end
    if not r then
        local uid = redis.call('HINCRBY', k.s, 'next_uid', 1)
        r = {uid = uid, addr = addr, lact = 0, lfirst = 0, lcount = 0, lleft = 0, lgranted = 0,
             lreport = 0}
        if m.npeers == 0 then
            redis.call('ZREM', P .. 'empty', d)
        end
        m.npeers = m.npeers + 1
        out.dpeers = 1
    end
    local had_lease = r.lact == 1
    if r.addr ~= addr then
        redis.call('ZREM', k.pz, agent .. '\n' .. r.addr)
        r.addr = addr
    end

    -- Hashes of pieces leased to the reporter; the first one stays.
    for pos = 1, #hashes, he do
        local idx = be32(hashes, pos)
        if r.lact == 1 and tonumber(redis.call('HGET', k.lk, idx)) == r.uid and
            redis.call('GETBIT', k.hb, idx) == 0 then
            redis.call('SETBIT', k.hb, idx, 1)
            redis.call('APPEND', k.log, string.sub(hashes, pos, pos + he - 1))
            redis.call('APPEND', k.rl, akey)
            m.nhashed = m.nhashed + 1
            r.lreport = now
            redis.call('HDEL', k.lk, idx)
            m.nleased = m.nleased - 1
            r.lleft = r.lleft - 1
            if r.lleft == 0 then
                r.lact = 0
            end
            out.hashes_accepted = out.hashes_accepted + 1
        else
            out.hashes_ignored = out.hashes_ignored + 1
        end
    end
    -- An agent that completed the blob through the swarm checked every
    -- piece against these hashes and the whole blob against its digest: it
    -- vouches for every hash it did not report itself (swarm.c, vouch).
    if completed and m.nconf < m.nhashed then
        local log = redis.call('GET', k.log) or ''
        local rl = redis.call('GET', k.rl) or ''
        local cf = redis.call('GET', k.cf) or ''
        local set = {'BITFIELD', k.cf}
        for j = 0, m.nhashed - 1 do
            local idx = be32(log, j * he + 1)
            if string.sub(rl, j * 8 + 1, j * 8 + 8) ~= akey and bit_at(cf, idx) == 0 then
                set[#set + 1] = 'SET'
                set[#set + 1] = 'u1'
                set[#set + 1] = idx
                set[#set + 1] = 1
                m.nconf = m.nconf + 1
                -- unpack() takes a few thousand values at most.
                if #set >= 4002 then
                    redis.call(unpack(set))
                    set = {'BITFIELD', k.cf}
                end
            end
        end
        if #set > 2 then
            redis.call(unpack(set))
        end
    end
    -- Leased pieces given up go back.
    for pos = 1, #failed, 4 do
        local idx = be32(failed, pos)
        if r.lact == 1 and tonumber(redis.call('HGET', k.lk, idx)) == r.uid then
            lease_drop_piece(k, m, r, idx)
            out.leases_released = out.leases_released + 1
        end
    end
    mark_suspects()

    local lease = nil
    if want_lease then
        if r.lact == 1 and lease_expiry(r, lease_timeout) <= now then
            lease_release(d, k, m, agent, r)
            out.expired = out.expired + 1
        end
        if r.lact == 0 then
            local first = redis.call('BITPOS', k.busy, 0, 0, -1, 'BIT')
            if first >= 0 and first < m.pieces then
                local stop = redis.call('BITPOS', k.busy, 1, first, -1, 'BIT')
                if stop < 0 or stop > m.pieces then
                    stop = m.pieces
                end
                -- tracker_lease_cap (tracker/swarm.c), over the swarm's own
                -- piece count: at most ceil(pieces / lease_spread), at least 1.
                local cap = math.floor((m.pieces + lease_spread - 1) / lease_spread)
                if cap < 1 then
                    cap = 1
                end
                if cap > lease_pieces then
                    cap = lease_pieces
                end
                if stop > first + cap then
                    stop = first + cap
                end
                local bf = {'BITFIELD', k.busy}
                local lk = {'HSET', k.lk}
                for i = first, stop - 1 do
                    bf[#bf + 1] = 'SET'
                    bf[#bf + 1] = 'u1'
                    bf[#bf + 1] = i
                    bf[#bf + 1] = 1
                    lk[#lk + 1] = i
                    lk[#lk + 1] = r.uid
                end
                redis.call(unpack(bf))
                redis.call(unpack(lk))
                m.nleased = m.nleased + (stop - first)
                r.lact, r.lfirst, r.lcount, r.lleft = 1, first, stop - first, stop - first
                r.lgranted, r.lreport = now, 0
                out.granted = 1
            end
        end
        if r.lact == 1 then
            local held = {}
            for i = r.lfirst, r.lfirst + r.lcount - 1 do
                if tonumber(redis.call('HGET', k.lk, i)) == r.uid then
                    held[#held + 1] = struct.pack('>I4', i)
                end
            end
            lease = {table.concat(held), lease_expiry(r, lease_timeout) - now}
        end
    end
    if r.lact == 1 then
        redis.call('ZADD', P .. 'leases', lease_expiry(r, lease_timeout), d .. '\n' .. agent)
    elseif had_lease then
        redis.call('ZREM', P .. 'leases', d .. '\n' .. agent)
    end
    rec_store(k, agent, r)
    redis.call('ZADD', k.pz, (complete == 1 and RANK_COMPLETE or 0) + have * RANK_HAVE + rnd,
        agent .. '\n' .. addr)
    redis.call('ZADD', P .. 'peers', now, d .. '\n' .. agent)
    meta_store(k, m)

    -- The hand-out: peers but the caller and the suspects, seeds first,
    -- then by pieces held, ties in the random order of their last
    -- announces; at most max_peers. The rank says complete and have; a
    -- peer past peer_timeout is gone at the next expiry pass (a second).
    local peers = {}
    local page = max_peers + 8
    local start = 0
    while #peers < max_peers * 4 do
        local ranked = redis.call('ZREVRANGE', k.pz, start, start + page - 1, 'WITHSCORES')
        if #ranked == 0 then
            break
        end
        for i = 1, #ranked, 2 do
            local member = ranked[i]
            local nl = string.find(member, '\n', 1, true)
            local name = string.sub(member, 1, nl - 1)
            if name ~= agent then
                local paddr = string.sub(member, nl + 1)
                local ok = true
                if m.nsu > 0 then
                    local raw = redis.call('HGET', k.su, paddr)
                    if raw then
                        local u, reps = su_parse(raw)
                        ok = u <= now or #reps < 8 * quorum
                    end
                end
                if ok then
                    local rank = tonumber(ranked[i + 1])
                    peers[#peers + 1] = name
                    peers[#peers + 1] = paddr
                    peers[#peers + 1] = math.floor((rank % RANK_COMPLETE) / RANK_HAVE)
                    peers[#peers + 1] = rank >= RANK_COMPLETE and 1 or 0
                    if #peers >= max_peers * 4 then
                        break
                    end
                end
            end
        end
        if #ranked < 2 * page then
            break
        end
        start = start + page
    end
    return reply(peers, lease)
end

-- --- expiry ---------------------------------------------------------------------

local function split(member)
    local nl = string.find(member, '\n', 1, true)
    return string.sub(member, 1, nl - 1), string.sub(member, nl + 1)
end

local function expire()
    local peer_timeout, lease_timeout = tonumber(ARGV[4]), tonumber(ARGV[5])
    local keep_ms, batch = tonumber(ARGV[6]), tonumber(ARGV[7])
    local peers_expired, leases_expired, swarms_dropped = 0, 0, 0

    -- Peers silent for peer_timeout leave, with their leases.
    local gone = redis.call('ZRANGEBYSCORE', P .. 'peers', '-inf', now - peer_timeout, 'LIMIT', 0,
        batch)
    for _, member in ipairs(gone) do
        local d, agent = split(member)
        local k = keys(d)
        local m = meta_load(k)
        local r = m and rec_load(k, agent) or nil
        if r then
            if r.lact == 1 then
                leases_expired = leases_expired + 1
            end
            peer_remove(d, k, m, agent, r, keep_ms)
            meta_store(k, m)
            peers_expired = peers_expired + 1
        else
            redis.call('ZREM', P .. 'peers', member)
        end
    end
    -- Leases whose holder stopped reporting end.
    local ended = redis.call('ZRANGEBYSCORE', P .. 'leases', '-inf', now, 'LIMIT', 0, batch)
    for _, member in ipairs(ended) do
        local d, agent = split(member)
        local k = keys(d)
        local m = meta_load(k)
        local r = m and rec_load(k, agent) or nil
        if r and r.lact == 1 and lease_expiry(r, lease_timeout) <= now then
            lease_release(d, k, m, agent, r)
            rec_store(k, agent, r)
            meta_store(k, m)
            leases_expired = leases_expired + 1
        elseif r and r.lact == 1 then
            redis.call('ZADD', P .. 'leases', lease_expiry(r, lease_timeout), member)
        else
            redis.call('ZREM', P .. 'leases', member)
        end
    end
    -- Suspect marks that ran out.
    local sus = redis.call('ZRANGEBYSCORE', P .. 'sus', '-inf', now, 'LIMIT', 0, batch)
    for _, d in ipairs(sus) do
        local k = keys(d)
        local all = redis.call('HGETALL', k.su)
        local first, n = nil, 0
        for i = 1, #all, 2 do
            local u = (su_parse(all[i + 1]))
            if u <= now then
                redis.call('HDEL', k.su, all[i])
            else
                n = n + 1
                if not first or u < first then
                    first = u
                end
            end
        end
        if first then
            redis.call('ZADD', P .. 'sus', first, d)
        else
            redis.call('ZREM', P .. 'sus', d)
        end
        if redis.call('EXISTS', k.s) == 1 then
            redis.call('HSET', k.s, 'nsu', n)
        end
    end
    -- Peerless swarms whose retention ended.
    local drop = redis.call('ZRANGEBYSCORE', P .. 'empty', '-inf', now, 'LIMIT', 0, batch)
    for _, d in ipairs(drop) do
        local np = tonumber(redis.call('HGET', P .. 's:' .. d, 'npeers'))
        if not np or np == 0 then
            swarm_delete(d)
            swarms_dropped = swarms_dropped + 1
        else
            redis.call('ZREM', P .. 'empty', d)
        end
    end
    return {peers_expired, leases_expired, swarms_dropped, redis.call('ZCARD', P .. 'swarms'),
            redis.call('ZCARD', P .. 'peers')}
end

-- --- listing --------------------------------------------------------------------

local function list()
    local out = {}
    for _, d in ipairs(redis.call('ZRANGE', P .. 'swarms', 0, -1)) do
        local k = keys(d)
        local v = redis.call('HMGET', k.s, 'size', 'plen', 'pieces', 'nhashed', 'nleased')
        if v[1] then
            out[#out + 1] = d
            for i = 1, 5 do
                out[#out + 1] = tonumber(v[i])
            end
            out[#out + 1] = redis.call('ZCARD', k.pz)
            out[#out + 1] = redis.call('ZCOUNT', k.pz, RANK_COMPLETE, '+inf')
        end
    end
    return out
end

-- --- the cluster side -------------------------------------------------------------

local function alive()
    redis.call('SET', P .. 'tracker:' .. ARGV[4], '1', 'PX', tonumber(ARGV[5]))
    return now
end

local function ids()
    return redis.call('INCRBY', P .. 'jobs:id', tonumber(ARGV[4]))
end

local function agent_put()
    redis.call('HSET', P .. 'agents', ARGV[4], ARGV[5])
    redis.call('ZADD', P .. 'agents:seen', now, ARGV[4])
    return 1
end

-- Agents heartbeat since `since` (and the time now), after dropping those
-- silent for timeout.
local function agents_since()
    local since, timeout = tonumber(ARGV[4]), tonumber(ARGV[5])
    local old = redis.call('ZRANGEBYSCORE', P .. 'agents:seen', '-inf', now - timeout)
    for _, name in ipairs(old) do
        redis.call('HDEL', P .. 'agents', name)
        redis.call('ZREM', P .. 'agents:seen', name)
    end
    local out = {now}
    local seen = redis.call('ZRANGEBYSCORE', P .. 'agents:seen', '(' .. since, '+inf', 'WITHSCORES')
    if #seen == 0 then
        return out
    end
    local names = {}
    for i = 1, #seen, 2 do
        names[#names + 1] = seen[i]
    end
    local values = redis.call('HMGET', P .. 'agents', unpack(names))
    for i, name in ipairs(names) do
        if values[i] then
            out[#out + 1] = name
            out[#out + 1] = values[i]
            out[#out + 1] = tonumber(seen[2 * i])
        end
    end
    return out
end

-- Writes a job its owner runs; 0 when another replica took it over.
local function job_put()
    local id, rid, json, ttl = ARGV[4], ARGV[5], ARGV[6], tonumber(ARGV[7])
    local key = P .. 'job:' .. id
    local owner = redis.call('HGET', key, 'owner')
    if owner and owner ~= rid then
        return 0
    end
    local v = redis.call('INCR', P .. 'jobs:ver')
    redis.call('HSET', key, 'owner', rid, 'version', v, 'json', json)
    redis.call('ZADD', P .. 'jobs', v, id)
    if ttl > 0 then
        redis.call('PEXPIRE', key, ttl)
    end
    return v
end

-- Jobs written since version `since`: id, version, owner, JSON, and whether
-- the owner is alive; a job whose key expired comes back with no owner.
local function jobs_since()
    local since, limit = tonumber(ARGV[4]), tonumber(ARGV[5])
    local out = {}
    local got = redis.call('ZRANGEBYSCORE', P .. 'jobs', '(' .. since, '+inf', 'WITHSCORES',
        'LIMIT', 0, limit)
    for i = 1, #got, 2 do
        local id = got[i]
        local v = redis.call('HMGET', P .. 'job:' .. id, 'owner', 'json')
        out[#out + 1] = id
        out[#out + 1] = tonumber(got[i + 1])
        if not v[1] then
            redis.call('ZREM', P .. 'jobs', id)
            out[#out + 1] = ''
            out[#out + 1] = ''
            out[#out + 1] = 0
        else
            out[#out + 1] = v[1]
            out[#out + 1] = v[2]
            out[#out + 1] = redis.call('EXISTS', P .. 'tracker:' .. v[1])
        end
    end
    return out
end

-- For each replica id given, 1 when it is alive.
local function alive_check()
    local out = {}
    for i = 4, #ARGV do
        out[#out + 1] = redis.call('EXISTS', P .. 'tracker:' .. ARGV[i])
    end
    return out
end

-- Takes a job over from a replica that is gone; 1 when it is ours now.
local function job_claim()
    local id, old, rid = ARGV[4], ARGV[5], ARGV[6]
    local key = P .. 'job:' .. id
    if redis.call('HGET', key, 'owner') ~= old or
        redis.call('EXISTS', P .. 'tracker:' .. old) == 1 then
        return 0
    end
    local v = redis.call('INCR', P .. 'jobs:ver')
    redis.call('HSET', key, 'owner', rid, 'version', v)
    redis.call('ZADD', P .. 'jobs', v, id)
    return 1
end

if op == 'announce' then
    return announce()
elseif op == 'alive' then
    return alive()
elseif op == 'ids' then
    return ids()
elseif op == 'agent_put' then
    return agent_put()
elseif op == 'agents_since' then
    return agents_since()
elseif op == 'job_put' then
    return job_put()
elseif op == 'jobs_since' then
    return jobs_since()
elseif op == 'job_claim' then
    return job_claim()
elseif op == 'alive_check' then
    return alive_check()
elseif op == 'expire' then
    return expire()
elseif op == 'list' then
    return list()
end
return redis.error_reply('shoal: unknown operation ' .. tostring(op))
