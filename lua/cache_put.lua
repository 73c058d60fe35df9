-- Stores a cache entry unless it was purged after the fetch that produced it began,
-- so a fill racing a purge never re-installs the old entry.
-- KEYS[1] entry key      (<prefix>:cache:{path hash}:<entry hash>)
-- KEYS[2] tombstone key  (<prefix>:cache:{path hash}:tomb) — same hash tag
-- ARGV[1] encoded entry bytes
-- ARGV[2] ttl in ms
-- ARGV[3] when the fetch began (Unix ms)
-- Reply: 1 stored, 0 refused (purged after the fetch began)
local purged = redis.call('GET', KEYS[2])
if purged and tonumber(purged) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
