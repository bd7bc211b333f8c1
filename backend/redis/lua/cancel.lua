-- cancel cancels a live job of this queue. ARGV[4] job ID, ARGV[5] reason.
-- Queued, scheduled, deferred and retrying jobs become canceled at once; an
-- active one is only marked (its worker finishes it). It returns
-- {code, state, cross}: code 'ok', 'invalid' (completed or failed: left as
-- it is), 'notfound' or 'corrupt'. A cancel request of an active job goes
-- to the queue's event stream and to its cancel stream.

local id, reason = ARGV[4], ARGV[5]
local r = load(id)
if r == nil then return {'notfound', '', {}} end
if r == false then return {'corrupt', '', {}} end
local s = r.s
if s == 'q' or s == 's' or s == 'd' or s == 'r' then
  unindex(id, r)
  r.w = nil
  r.E = reason
  terminate(id, r, 'x')
  emit('canceled', id, r, 'E', reason)
  settle(id, r)
  save(id, r)
  flush()
  return {'ok', 'x', cross}
elseif s == 'a' then
  if r.C ~= '1' then
    r.C = '1'
    r.Q = reason
    save(id, r)
    emit('cancel_requested', id, r)
    -- Running engines read the cancel stream alone (ReadCancels), so the
    -- request goes there too, with the same fields. Readers start at its
    -- newest entry, so a short stream is enough.
    rcall('XADD', K_CANCELS, 'MAXLEN', '~', '1000', '*', 'O', order_us(), 'k', 'cancel_requested', 'i', id,
      't', typ(r), 's', 'active', 'a', r.a or '0', 'T', NOW)
  end
  return {'ok', 'a', {}}
elseif s == 'x' then
  return {'ok', 'x', {}}
end
return {'invalid', s, {}}
