-- corrupt fails an active job whose record Lease's caller could not read,
-- with an error that says why, so that it never runs. ARGV[4] job ID,
-- ARGV[5] its lease token, ARGV[6] why, ARGV[7] how long it is kept (ns).
-- It returns 1 when it failed the job, 0 when the lease was gone.

local id, token, why, ttl = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local raw = rcall('HGET', K_JOBS, id)
if not raw then return 0 end
local r = dec(raw)
if not r or r.s ~= 'a' or r.L ~= token then return 0 end
rcall('ZREM', K_ACTIVE, id)
end_lease(r)
fail_corrupt(id, why, raw, ttl, 'a')
flush()
return 1
