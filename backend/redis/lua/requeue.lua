-- requeue puts a failed or canceled job of this queue back as a fresh job:
-- attempts, failures, stalls, error, progress and result reset. Its
-- dependencies are not looked at again: an operator who requeues a job
-- wants it to run. ARGV[4] job ID. It returns {'ok', unique key,
-- UniqueUntil} (the caller takes the key again if it is free), or
-- {'invalid', state}, {'notfound'} or {'corrupt'}.

local id = ARGV[4]
local r = load(id)
if r == nil then return {'notfound'} end
if r == false then return {'corrupt'} end
if r.s ~= 'f' and r.s ~= 'x' then return {'invalid', r.s} end
rcall('ZREM', K_DONE, id)
for _, tag in ipairs({'a', 'f', 'z', 'E', 'y', 'g', 'G', 'x', 'b', 'h', 'w', 'Q', 'B', 'L', 'l', 'W', 'C'}) do
  r[tag] = nil
end
local f = body_fields(r.body) or {}
move(r.s, 'q')
r.s = 'q'
push_ready(id, r, false)
emit('queued', id, r)
save(id, r)
flush()
return {'ok', f.u or '', f.U or ''}
