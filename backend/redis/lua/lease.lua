-- lease takes up to ARGV[4] ready jobs of one queue, highest priority first
-- and FIFO within one, and makes them active. A job whose limit key is held
-- back is parked and the next one taken instead (no head-of-line blocking).
-- ARGV[5] worker, ARGV[6] lease expiry (ns), ARGV[7] token prefix,
-- ARGV[8] how long a corrupt job is kept once failed (ns), ARGV[9] '1'
-- when the caller took the queue's wake marker to make this call (see the
-- end).
-- It returns {'paused'} for a paused queue, or a flat list of pairs: each
-- job's ID, then its record, or {why} for a job whose record was corrupt
-- (one list rather than a list per job: each costs Redis a table and a
-- nested reply).

if paused() then
  rcall('DEL', K_WAKE)
  return {'paused'}
end

local max, worker, until_ns, prefix, corrupt_ttl = s2n(ARGV[4]), ARGV[5], ARGV[6], ARGV[7], ARGV[8]
-- Parked jobs whose key has room now go back in line first, where they stood.
unpark()
-- The expiry's score, in µs: its decimal string without the last three
-- digits, as num(us(until_ns)) would write it, without two conversions.
local until_us = #until_ns > 3 and sub(until_ns, 1, -4) or '0'
local out, taken = {}, 0
local hset, zadd = {'HSET', K_JOBS}, {'ZADD', K_ACTIVE}
local prios = rcall('ZREVRANGE', K_PRIOS, 0, -1)
-- A list LPOP did not fill the request from is empty now; ready_left says
-- whether any job is left ready once the call is done.
local ready_left = false
for pi, p in ipairs(prios) do
  local key = ready_key(p)
  local drained = false
  while taken < max do
    local want = max - taken
    local ids = rcall('LPOP', key, n2s(want))
    if not ids then
      drained = true
      break
    end
    if #ids < want then drained = true end
    -- One HMGET, one HSET and one ZADD for the whole batch.
    local raws = rcall('HMGET', K_JOBS, unpack(ids))
    for k, id in ipairs(ids) do
      local raw = raws[k]
      local r, why
      if raw then
        r, why = dec(raw)
        if r and not STATE[r.s or ''] then r, why = false, 'no valid state' end
      end
      if not raw then
        -- The record is gone (deleted by hand): nothing to run.
        count('queued', -1)
      elseif not r then
        fail_corrupt(id, why, raw, corrupt_ttl, 'q')
        out[#out + 1] = id
        out[#out + 1] = {why}
      elseif r.s == 'q' and LIMITS_ON and r.k and
          (room(r.k) <= 0 or not UNPARKED[id] and rcall('EXISTS', parked_key(r.k)) == 1) then
        -- Its key is held back, or jobs of the key wait parked before it:
        -- it waits parked, and the next job in line goes instead.
        park(id, r.k)
      elseif r.s == 'q' then
        taken = taken + 1
        r.s = 'a'
        r.a = n2s(int(r.a) + 1)
        r.b = NOW
        -- A job under a limit starts at the time the limit admitted it
        -- (later than this call's own now when a Promote opened the
        -- window), to the microsecond the window counts in, so that its
        -- StartedAt agrees with the window.
        if LIMITS_ON and r.k then r.b = num(limit_at()) .. '000' end
        r.L = prefix .. n2s(taken) .. '@' .. QUEUE
        r.l = until_ns
        r.W = worker
        r.C = nil
        if LIMITS_ON and r.k then admit(r.k, r.L) end
        emit('active', id, r)
        local rec = enc(r)
        remember(rec, r)
        hset[#hset + 1] = id
        hset[#hset + 1] = rec
        zadd[#zadd + 1] = until_us
        zadd[#zadd + 1] = id
        out[#out + 1] = id
        out[#out + 1] = rec
      end
    end
    if drained then break end
  end
  if not drained and rcall('EXISTS', key) == 0 then drained = true end
  if drained then rcall('ZREM', K_PRIOS, p) end
  if taken >= max then
    ready_left = not drained or pi < #prios
    break
  end
end
if taken > 0 then
  rcall(unpack(hset))
  rcall(unpack(zadd))
  count('queued', -taken)
  count('active', taken)
end

-- The marker stays while jobs are ready, so that the next waiter (in any
-- process) wakes too; it goes when none are, so that nobody wakes for
-- nothing. Only a call whose caller took the marker puts it back: while
-- jobs are ready, the marker is there or a Lease call that took it is on
-- its way here, so a call that took none has nothing to put back.
if not ready_left then
  rcall('DEL', K_WAKE)
elseif ARGV[9] == '1' then
  rcall('ZADD', K_WAKE, '0', 'w')
end
flush()
return out
