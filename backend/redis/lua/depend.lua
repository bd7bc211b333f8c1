-- depend runs in the queue of a parent job whose child lives in another
-- queue: it records the child (ARGV[5] queue, ARGV[6] ID) as a dependent of
-- parent ARGV[4] while the parent is live, so that the parent's end reaches
-- the child, and returns the parent's state code ('' when it is not found).
-- Recording twice changes nothing, so a recheck may call it again.

local pid, cq, cid = ARGV[4], ARGV[5], ARGV[6]
local p = load(pid)
if p == nil then return '' end
if p == false then return 'f' end
if not TERMINAL[p.s] then
  local deps = ldec(p.n)
  for i = 1, #deps - 1, 2 do
    if deps[i] == cq and deps[i + 1] == cid then return p.s end
  end
  deps[#deps + 1] = cq
  deps[#deps + 1] = cid
  p.n = lenc(deps)
  save(pid, p)
end
return p.s
