-- sweep deletes up to ARGV[4] terminal jobs of one queue whose expiry is
-- before now. It returns {deleted, keys}: keys lists, for each deleted job
-- that had a unique key, {key, ID, state code, UniqueUntil}, for the caller
-- to release in the unique-key registry (unique.lua), which is in another
-- slot.

local limit = tonumber(ARGV[4])
local ids = rcall('ZRANGEBYSCORE', K_DONE, '-inf', '(' .. num(us(NOW)), 'LIMIT', 0, limit)
local keys = {}
for _, id in ipairs(ids) do
  rcall('ZREM', K_DONE, id)
  local r = load(id)
  if r and TERMINAL[r.s] then
    move(r.s, nil)
    local f = body_fields(r.body) or {}
    if f.u then keys[#keys + 1] = {f.u, id, r.s, f.U or ''} end
    rcall('HDEL', K_JOBS, id)
  elseif r == false then
    -- An unreadable record in the terminal index was failed by this
    -- backend (fail_corrupt), so it counts as failed.
    count('failed', -1)
    rcall('HDEL', K_JOBS, id)
  end
end
flush()
return {#ids, keys}
