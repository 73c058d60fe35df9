-- capacity_read: one consistent snapshot of one or more counters of the same shard.
-- KEYS[2i-1] counter hash   <prefix>:cap:{capNN}:<ns>/<id>       (i = 1..n, one hash tag)
-- KEYS[2i]   member set     <prefix>:cap:{capNN}:<ns>/<id>/members
-- ARGV none
-- Reply: flat {defined, count, capacity, version} per counter; defined 1, or 0 (rest 0)
local out = {}
for i = 1, #KEYS, 2 do
  local h = redis.call('HMGET', KEYS[i], 'capacity', 'version')
  if h[1] then
    table.insert(out, 1)
    table.insert(out, redis.call('SCARD', KEYS[i + 1]))
    table.insert(out, tonumber(h[1]))
    table.insert(out, tonumber(h[2]) or 0)
  else
    table.insert(out, 0)
    table.insert(out, 0)
    table.insert(out, 0)
    table.insert(out, 0)
  end
end
return out
