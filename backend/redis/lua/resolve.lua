-- resolve runs in the queue of deferred children whose parents live in
-- other queues and have ended. ARGV from 4 are triples: child ID, parent ID,
-- parent's state code ('c', 'f', 'x', or '?' when it is gone). Each child
-- that still waits for that parent is released or canceled; a child that
-- heard already is left alone, so a triple may come twice. It returns the
-- dependents in other queues that this in turn reaches.

for i = 4, #ARGV - 2, 3 do
  resolve(ARGV[i], ARGV[i + 1], ARGV[i + 2])
end
flush()
return cross
