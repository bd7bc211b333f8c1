-- progress stores an active job's progress and records EventProgress.
-- ARGV[4] job ID, ARGV[5] token, ARGV[6] percent, ARGV[7] message.
-- It returns 'ok', 'lost' or 'cancel' (stored, but a cancel is pending).

local id, token, percent, message = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local r = load(id)
if not r or r.s ~= 'a' or r.L ~= token then return 'lost' end
r.g = (percent ~= '0') and percent or nil
r.G = message
save(id, r)
emit('progress', id, r, 'g', percent, 'G', message)
return (r.C == '1') and 'cancel' or 'ok'
