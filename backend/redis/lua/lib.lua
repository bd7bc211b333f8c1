-- lib.lua comes after base.lua in every queue script. A queue script
-- touches only the keys of one queue (and, on a single Redis, the limit keys
-- of base.lua), so that on Redis Cluster it runs in one slot.
--
-- KEYS (the same for every queue script, see keys.go): 1 the queue's jobs
-- key, 2 the limits key of base.lua on a single Redis only (none on a
-- Cluster). Every key of the queue shares the jobs key's hash tag, and so
-- its slot; init makes their names from it (BASE is "{prefix:queue}:"):
--   jobs      HASH   job ID -> record
--   meta      HASH   counts per state, processed and failure totals, paused
--   prios     ZSET   priorities that have a ready list (and, for a while,
--                    perhaps one whose list Lease emptied, see lease.lua)
--   scheduled ZSET   scheduled and retrying jobs by RunAt (µs)
--   active    ZSET   active jobs by lease expiry (µs)
--   done      ZSET   terminal jobs by expiry (µs)
--   recheck   ZSET   deferred jobs with a dependency in another queue, by next check (µs)
--   events    STREAM the queue's events
--   wake      ZSET   one member while jobs are ready; blocked Lease calls pop it
--   cancels   STREAM the queue's cancel requests alone (ReadCancels), capped
-- Passing one key instead of fourteen saves FCALL a dozen arguments (Redis
-- makes an object of each, Lua a string) on every call.
-- Ready jobs wait in one LIST per priority, BASE .. 'ready:' .. priority.
-- Jobs that Lease passed over because their limit key was held back wait
-- parked in one LIST per key, BASE .. 'parked:' .. key, in the order they
-- stood; BASE .. 'parkedkeys' (SET) names those keys.
--
-- ARGV[1] now (ns), ARGV[2] event stream cap, ARGV[3] queue name; the rest
-- belongs to the script.
--
-- A record is a string of fields, each a one-letter tag, the value's length,
-- a colon and the value ("s1:qt5:email..."); record.go lists the tags. The
-- fields that change (state, attempt, lease...) come first; from field t on
-- come the fields fixed at enqueue, the body: t type, o options
-- ("priority,MaxRetries,MaxStalls,Timeout,ResultTTL,FailureTTL"), c created,
-- then unique key, UniqueUntil, DependsOn, meta and payload. Scripts decode
-- the head and copy the body as it is, which keeps every transition cheap.
-- Times are Unix nanoseconds and durations nanoseconds, in decimal; index
-- scores are microseconds, which a double holds exactly.

local K_JOBS, K_META, K_PRIOS, K_SCHED, K_ACTIVE, K_DONE, K_RECHECK, K_EVENTS, K_WAKE, K_CANCELS
local BASE, CAP, QUEUE, K_PARKEDKEYS
-- What one call gathers as it goes, written at its end (see below). Most
-- calls leave most of these empty: init makes a new table only for one that
-- the last call wrote in (or left behind, had it failed halfway). cross is
-- returned by some scripts, empty or not: it is never written once returned.
local delta, done_batch, ORDER_US, UNPARKED, cross = {}, {}, nil, {}, {}

-- init sets what belongs to one call of a queue script: every queue script
-- (or function) calls it first, with its KEYS, its ARGV and LK.
local function init(keys, argv, lk)
  init_base(keys, argv, lk)
  local kj = keys[1]
  if kj ~= K_JOBS then
    -- Strings are interned: the same queue as the last call's costs a
    -- comparison here, not a dozen new strings.
    K_JOBS = kj
    local b = sub(kj, 1, -5) -- the queue's key prefix, without "jobs"
    BASE = b
    K_META, K_PRIOS, K_SCHED, K_ACTIVE, K_DONE, K_RECHECK, K_EVENTS, K_WAKE, K_CANCELS =
      b .. 'meta', b .. 'prios', b .. 'scheduled', b .. 'active', b .. 'done', b .. 'recheck', b .. 'events',
      b .. 'wake', b .. 'cancels'
    K_PARKEDKEYS = b .. 'parkedkeys'
  end
  CAP, QUEUE = argv[2], argv[3]
  if nxt(delta) then delta = {} end
  if done_batch[1] then done_batch = {} end
  if nxt(UNPARKED) then UNPARKED = {} end
  if cross[1] then cross = {} end
  ORDER_US = nil
end

local STATE = {q = 'queued', s = 'scheduled', d = 'deferred', a = 'active', r = 'retrying',
  c = 'completed', f = 'failed', x = 'canceled'}
local TERMINAL = {c = true, f = true, x = true}

-- Records that a transition wrote lately, by the record string itself, each
-- with its decoded head: the next transition of the job (finish after
-- lease, lease after enqueue while the backlog is short) reads the same
-- string back from Redis and copies the head instead of parsing it. Strings
-- are interned in Lua, so the lookup hashes a pointer. A head depends on its
-- string alone, so an entry stays right whoever wrote or copied the record,
-- and the cache lives across calls (the library's upvalues; a script starts
-- with it empty), in two generations: past RECS_MAX entries or
-- RECS_MAX_BYTES of records, the newer one becomes the older and the older
-- goes. A remembered table is never written again (dec hands out copies).
local RECS, RECS_OLD, RECS_N, RECS_BYTES, RECS_MAX, RECS_MAX_BYTES = {}, {}, 0, 0, 256, 524288
-- Enqueue remembers a new record only while at most RECS_BACKLOG jobs
-- stand in its ready list: behind a longer line it would be pushed out
-- before Lease reaches it, and would only crowd out the records that Lease
-- remembered for Finish.
local RECS_BACKLOG = RECS_MAX / 2

-- remember keeps r as the decoded head of record s, which enc(r) just made:
-- r then holds only what s says (its fields, and what typ and spec read from
-- its body), and the caller must not change it afterwards.
local function remember(s, r)
  -- A large record costs little to decode next to its size (dec copies its
  -- body whole either way), and would crowd out many small ones.
  if #s > 65536 then return end
  if RECS_N >= RECS_MAX or RECS_BYTES >= RECS_MAX_BYTES then
    RECS_OLD, RECS, RECS_N, RECS_BYTES = RECS, {}, 0, 0
  end
  RECS[s] = r
  RECS_N = RECS_N + 1
  RECS_BYTES = RECS_BYTES + #s
end

-- dec parses the head of a record into a table; r.body keeps the rest (from
-- field t on) as it is. It returns nil and why for a record it cannot read.
local function dec(s)
  -- The table is made with room for the fields a transition usually has
  -- and adds, so that it does not grow (each growth rehashes it).
  local r = {s = nil, a = nil, b = nil, L = nil, l = nil, W = nil, h = nil, y = nil, body = nil, tp = nil, sp = nil}
  local c = RECS[s] or RECS_OLD[s]
  if c then
    -- A copy, which the caller may change.
    for k, v in pairs(c) do r[k] = v end
    return r
  end
  local i, n = 1, #s
  while i <= n do
    local tag, len, at = match(s, '^(.)(%d+):()', i)
    if not tag then return nil, 'a field has no length' end
    if tag == 't' then
      r.body = sub(s, i)
      return r
    end
    local stop = at + s2n(len) - 1
    if stop > n then return nil, 'field ' .. tag .. ' is cut short' end
    r[tag] = sub(s, at, stop)
    i = stop + 1
  end
  return nil, 'no type'
end

-- enc writes a record: its head fields (one-letter keys), then its body.
-- It clears the empty fields it leaves out, so that r reads as the record
-- decodes (see remember). The pieces go into one table that every call
-- reuses (concat reads only the first n + 1), and the field heads come made
-- (field_head).
local PIECES = {}
local function enc(r)
  local out, n = PIECES, 0
  for tag, v in pairs(r) do
    if #tag == 1 then
      if v == '' then
        r[tag] = nil
      else
        out[n + 1] = field_head(tag, #v)
        out[n + 2] = v
        n = n + 2
      end
    end
  end
  out[n + 1] = r.body
  return concat(out, '', 1, n + 1)
end

-- typ returns a record's type, the first field of its body.
local function typ(r)
  if not r.tp then
    local len, at = match(r.body, '^t(%d+):()')
    r.tp = len and sub(r.body, at, at + s2n(len) - 1) or ''
  end
  return r.tp
end

-- spec returns a record's options (P priority, R MaxRetries, Z MaxStalls,
-- o timeout, k ResultTTL, K FailureTTL, see record.go), read from its body
-- once per record. Jobs share a few options strings, so each is parsed once
-- (OPTS, up to OPTS_MAX of them, then afresh) into a table that every record
-- with it shares: nothing may write in it.
local OPTS, OPTS_N, OPTS_MAX, NO_OPTS = {}, 0, 256, {}
local function spec(r)
  local sp = r.sp
  if sp then return sp end
  local tp = typ(r)
  local len, at = match(r.body, '^o(%d+):()', #field_head('t', #tp) + #tp + 1)
  sp = NO_OPTS
  if len then
    local o = sub(r.body, at, at + s2n(len) - 1)
    sp = OPTS[o]
    if not sp then
      if OPTS_N >= OPTS_MAX then OPTS, OPTS_N = {}, 0 end
      sp = {}
      sp.P, sp.R, sp.Z, sp.o, sp.k, sp.K = match(o, '^(%-?%d+),(%-?%d+),(%-?%d+),(%-?%d+),(%-?%d+),(%-?%d+)$')
      OPTS[o] = sp
      OPTS_N = OPTS_N + 1
    end
  end
  r.sp = sp
  return sp
end

-- created returns a record's creation time, the field after its options.
local function created(r)
  if r.cr then return r.cr end
  local b = r.body
  local len, at = match(b, '^t(%d+):()')
  if not len then return nil end
  local i = at + s2n(len)
  len, at = match(b, '^o(%d+):()', i)
  if len then i = at + s2n(len) end
  len, at = match(b, '^c(%d+):()', i)
  if len then r.cr = sub(b, at, at + s2n(len) - 1) end
  return r.cr
end

-- body_fields parses the whole body (for the few scripts that need the
-- unique key, or to check a record).
local function body_fields(b)
  local f, i, n = {}, 1, #b
  while i <= n do
    local tag, len, at = match(b, '^(.)(%d+):()', i)
    if not tag then return nil end
    local stop = at + s2n(len) - 1
    if stop > n then return nil end
    f[tag] = sub(b, at, stop)
    i = stop + 1
  end
  return f
end

local function make_body(typ, options, created)
  return 't' .. n2s(#typ) .. ':' .. typ .. 'o' .. n2s(#options) .. ':' .. options .. 'c' .. n2s(#created) .. ':' ..
    created
end

-- load returns the record of job id: nil when there is none, false and why
-- (and the raw bytes) when its head cannot be read. Scripts read only the
-- head and the first fields of the body, and never fail on odd values there
-- (int and us read garbage as 0); Lease's caller checks the whole record
-- and fails a job it cannot read (corrupt.lua).
local function load(id)
  local raw = rcall('HGET', K_JOBS, id)
  if not raw then return nil end
  local r, why = dec(raw)
  if not r or not STATE[r.s or ''] then return false, why or 'no valid state', raw end
  return r
end

local function save(id, r)
  rcall('HSET', K_JOBS, id, enc(r))
end

-- A list inside a field is its items, each its length, a colon and itself.
local function ldec(s)
  local out, i, n = {}, 1, #(s or '')
  while i <= n do
    local len, at = match(s, '^(%d+):()', i)
    if not len then break end
    len = s2n(len)
    out[#out + 1] = sub(s, at, at + len - 1)
    i = at + len
  end
  return out
end

local function lenc(items)
  local out = {}
  for i, v in ipairs(items) do out[i] = n2s(#v) .. ':' .. v end
  return concat(out)
end

-- Counts per state change with every transition; they are applied once, at
-- the end of the script (flush), so that a batch costs one HINCRBY per state.
-- Every script that changes a job's state calls flush last.
local function count(field, d) delta[field] = (delta[field] or 0) + d end
local function move(from, to)
  if from then count(STATE[from], -1) end
  if to then count(STATE[to], 1) end
end

-- The tables are emptied in place rather than made anew, so that a call
-- leaves the collector no table of them to sweep.
local function flush()
  for field, d in pairs(delta) do
    if d ~= 0 then rcall('HINCRBY', K_META, field, n2s(d)) end
    delta[field] = nil
  end
  local n = #done_batch
  if n > 0 then
    rcall('ZADD', K_DONE, unpack(done_batch))
    for i = n, 1, -1 do done_batch[i] = nil end
  end
  if LIMITS_ON then flush_limits() end
end

-- Events of different queues are in different streams, whose IDs do not
-- order them among each other: each event carries the server's time in
-- microseconds (O) when its script ran, by which readers merge the streams.
local function order_us()
  if not ORDER_US then
    local t = rcall('TIME')
    local u = t[2] -- microseconds, without leading zeros
    ORDER_US = t[1] .. sub('000000', #u + 1) .. u
  end
  return ORDER_US
end

-- emit records the event of a transition in the queue's capped stream, as
-- fields: O order (see above), k kind, i job ID, t type, s state, a attempt,
-- T time; and, by kind, up to two of g progress, G message, y result,
-- E error, x RunAt. Entries with the same fields share their names in the
-- stream's nodes.
local function emit(kind, id, r, k1, v1, k2, v2)
  local t, s, a = typ(r), STATE[r.s] or '', r.a or '0'
  if k2 then
    rcall('XADD', K_EVENTS, 'MAXLEN', '~', CAP, '*', 'O', order_us(), 'k', kind, 'i', id, 't', t,
      's', s, 'a', a, 'T', NOW, k1, v1, k2, v2)
  elseif k1 then
    rcall('XADD', K_EVENTS, 'MAXLEN', '~', CAP, '*', 'O', order_us(), 'k', kind, 'i', id, 't', t,
      's', s, 'a', a, 'T', NOW, k1, v1)
  else
    rcall('XADD', K_EVENTS, 'MAXLEN', '~', CAP, '*', 'O', order_us(), 'k', kind, 'i', id, 't', t,
      's', s, 'a', a, 'T', NOW)
  end
end

local function paused() return rcall('HEXISTS', K_META, 'paused') == 1 end

-- wake leaves the marker that blocked Lease calls wait for, unless the queue
-- is paused (Resume leaves it then).
local function wake()
  if not paused() then rcall('ZADD', K_WAKE, '0', 'w') end
end

local function ready_key(p) return BASE .. 'ready:' .. p end

-- push_ready makes a job leasable: at the back of its priority's list, or at
-- the front for a job that goes back after a release or a stall.
local function push_ready(id, r, front)
  local p = spec(r).P or '0'
  rcall(front and 'LPUSH' or 'RPUSH', ready_key(p), id)
  rcall('ZADD', K_PRIOS, p, p)
  wake()
end

local function parked_key(k) return BASE .. 'parked:' .. k end

-- park puts a queued job whose limit key is held back aside, behind the
-- jobs of the key parked before it: it stays queued, and Lease takes it back
-- once the key has room (unpark).
local function park(id, k)
  rcall('RPUSH', parked_key(k), id)
  rcall('SADD', K_PARKEDKEYS, k)
  rcall('SADD', lqueues_key(k), QUEUE)
end

local function parked_gone(k)
  if rcall('EXISTS', parked_key(k)) == 0 then
    rcall('SREM', K_PARKEDKEYS, k)
    rcall('SREM', lqueues_key(k), QUEUE)
  end
end

-- unpark puts back, at the front of their ready lists and in the order they
-- stood, as many parked jobs of each key as the key has room for; UNPARKED
-- names them, so that Lease does not park them again for standing behind
-- the jobs of their key still parked.
local function unpark()
  if not LIMITS_ON then return end
  for _, k in ipairs(rcall('SMEMBERS', K_PARKEDKEYS)) do
    local n = room(k)
    if n > 0 then
      local pk = parked_key(k)
      local ids = rcall('LRANGE', pk, 0, n == math.huge and -1 or n - 1)
      for i = #ids, 1, -1 do
        local r = load(ids[i])
        if r and r.s == 'q' then
          local p = spec(r).P or '0'
          UNPARKED[ids[i]] = true
          rcall('LPUSH', ready_key(p), ids[i])
          rcall('ZADD', K_PRIOS, p, p)
        end
      end
      rcall('LTRIM', pk, #ids, -1)
      parked_gone(k)
    end
  end
end

-- unindex takes a job out of the index its state puts it in.
local function unindex(id, r)
  local s = r.s
  if s == 'q' then
    local p = spec(r).P or '0'
    if rcall('LREM', ready_key(p), 1, id) == 0 and LIMITS_ON and r.k then
      rcall('LREM', parked_key(r.k), 1, id)
      parked_gone(r.k)
    end
    if rcall('EXISTS', ready_key(p)) == 0 then rcall('ZREM', K_PRIOS, p) end
  elseif s == 's' or s == 'r' then
    rcall('ZREM', K_SCHED, id)
  elseif s == 'a' then
    rcall('ZREM', K_ACTIVE, id)
  elseif s == 'd' then
    rcall('ZREM', K_RECHECK, id)
  else
    rcall('ZREM', K_DONE, id)
  end
end

-- end_lease clears the lease of a job that stops being active, and frees
-- its place under its limit key.
local function end_lease(r)
  r.L, r.l, r.W, r.C, r.Q = nil, nil, nil, nil, nil
  if LIMITS_ON and r.k then add_active(r.k, -1) end
end

-- terminate ends a job in a terminal state and keeps it until now plus its
-- TTL (ResultTTL for completed jobs, FailureTTL otherwise). Like the counts,
-- the expiry index is written by flush, once per script.
local function terminate(id, r, state)
  move(r.s, state)
  r.s = state
  r.h = NOW
  local sp = spec(r)
  local ttl = (state == 'c') and sp.k or sp.K
  done_batch[#done_batch + 1] = num(us(NOW) + us(ttl or '0'))
  done_batch[#done_batch + 1] = id
end

-- become_due makes a job that waits for nothing else queued, or scheduled
-- while its RunAt is ahead.
local function become_due(id, r)
  if r.x and later(r.x, NOW) then
    move(r.s, 's')
    r.s = 's'
    rcall('ZADD', K_SCHED, num(us(r.x)), id)
    emit('queued', id, r, 'x', r.x)
  else
    move(r.s, 'q')
    r.s = 'q'
    push_ready(id, r, false)
    emit('queued', id, r)
  end
end

-- Dependents in other queues cannot be reached from here: settle collects
-- them as (queue, child, parent, parent's state) for the engine's process to
-- resolve in their own queues, and the recheck index finds any it misses
-- (cross, reset by init).

-- settle tells the dependents of parent pid, which has just ended in a
-- terminal state, what became of it: same-queue children are resolved at
-- once (and their own dependents in turn), the others are returned. The
-- caller saves pr; settle saves the children.
local function settle(pid, pr)
  local work = {{pid, pr}}
  while #work > 0 do
    local item = table.remove(work)
    local parent, p = item[1], item[2]
    local deps = ldec(p.n)
    p.n = nil
    for i = 1, #deps - 1, 2 do
      local q, cid = deps[i], deps[i + 1]
      if q ~= QUEUE then
        cross[#cross + 1] = {q, cid, parent, p.s}
      else
        local c = load(cid)
        if c and c.s == 'd' then
          -- Remove the parent from the child's waiting list; a child that
          -- no longer waits for it has heard already.
          local waits, rest, found = ldec(c.w), {}, false
          for j = 1, #waits - 1, 2 do
            if waits[j + 1] == parent then
              found = true
            else
              rest[#rest + 1] = waits[j]
              rest[#rest + 1] = waits[j + 1]
            end
          end
          if found then
            if p.s == 'c' then
              if #rest == 0 then
                c.w = nil
                rcall('ZREM', K_RECHECK, cid)
                become_due(cid, c)
              else
                c.w = lenc(rest)
              end
            else
              c.w = nil
              rcall('ZREM', K_RECHECK, cid)
              c.E = 'dependency ' .. parent .. ' ' .. (STATE[p.s] or 'not found')
              terminate(cid, c, 'x')
              emit('canceled', cid, c, 'E', c.E)
              if c.n then work[#work + 1] = {cid, c} end
            end
            if not c.n or p.s == 'c' then save(cid, c) end
          end
        end
      end
    end
    if parent ~= pid then save(parent, p) end
  end
end

-- resolve is settle for one child of this queue whose parent lives in
-- another: it is told by the parent's queue, or by a recheck. ps is the
-- parent's state code, or '?' when the parent is gone.
local function resolve(cid, pid, ps)
  settle(pid, {s = ps, n = lenc({QUEUE, cid})})
end

-- fail_corrupt replaces a record that cannot be read with a failed one that
-- says why, keeping the bytes for an operator (field B). from is the state
-- it was counted in.
local function fail_corrupt(id, why, raw, ttl, from)
  local t = '?'
  local old = dec(raw)
  if old and typ(old) ~= '' then t = typ(old) end
  local r = {s = 'f', h = NOW, B = raw, E = 'redis: corrupt job record (' .. why .. '); the job cannot run',
    body = make_body(t, '0,0,0,0,0,' .. ttl, NOW)}
  move(from, 'f')
  count('failures', 1)
  rcall('ZADD', K_DONE, num(us(NOW) + us(ttl)), id)
  emit('failed', id, r, 'E', r.E)
  save(id, r)
end

-- A deferred job that waits for a job of another queue is checked again
-- after RECHECK_MIN, then at intervals that grow with its age up to
-- RECHECK_MAX, in case the process that should have resolved it died.
local RECHECK_MIN_US, RECHECK_MAX_US = 5000000, 300000000

local function recheck_at(r)
  local age = us(NOW) - us(created(r) or NOW)
  return num(us(NOW) + math.min(math.max(age, RECHECK_MIN_US), RECHECK_MAX_US))
end
