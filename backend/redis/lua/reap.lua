-- reap handles active jobs of one queue whose lease expired before now, at
-- most ARGV[4] of them: Stalls+1 and back to the front of the queue, or
-- failed once Stalls reaches MaxStalls, or canceled when a cancel was
-- pending (its worker is gone, and the job must not run again). No failure
-- counts for the retry policy. ARGV[5] is how long a corrupt job is kept
-- once failed (ns). It returns {reaped, cross}.

local ids = rcall('ZRANGEBYSCORE', K_ACTIVE, '-inf', '(' .. num(us(NOW)), 'LIMIT', 0, tonumber(ARGV[4]))
for _, id in ipairs(ids) do
  rcall('ZREM', K_ACTIVE, id)
  local r, why, raw = load(id)
  if r == nil then
    count('active', -1)
  elseif r == false then
    -- Unreadable: fail it so that it does not come back here forever.
    fail_corrupt(id, why, raw, ARGV[5], 'a')
  elseif r.s == 'a' then
    r.z = n2s(int(r.z) + 1)
    local canceled, reason = r.C == '1', r.Q
    end_lease(r)
    if canceled then
      r.E = (reason and reason ~= '') and reason or 'canceled while active; its lease expired'
      terminate(id, r, 'x')
      emit('stalled', id, r, 'E', 'lease expired')
      emit('canceled', id, r, 'E', r.E)
      settle(id, r)
    elseif int(r.z) >= int(spec(r).Z) then
      r.E = 'job stalled ' .. r.z .. ' times (its lease expired each time; MaxStalls is ' .. int(spec(r).Z) .. ')'
      count('failures', 1)
      terminate(id, r, 'f')
      emit('stalled', id, r, 'E', 'lease expired')
      emit('failed', id, r, 'E', r.E)
      settle(id, r)
    else
      move('a', 'q')
      r.s = 'q'
      push_ready(id, r, true)
      emit('stalled', id, r, 'E', 'lease expired')
    end
    save(id, r)
  end
end
flush()
return {#ids, cross}
