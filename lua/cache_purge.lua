-- Purges one cache entry: deletes it and leaves a tombstone on its path with the
-- purge time, so fills of the path that began before the purge cannot store their
-- (older) answer afterwards.
-- KEYS[1] entry key      (<prefix>:cache:{path hash}:<entry hash>)
-- KEYS[2] tombstone key  (<prefix>:cache:{path hash}:tomb) — same hash tag
-- ARGV[1] purge time (Unix ms)
-- ARGV[2] tombstone ttl in ms
-- Reply: 1 when an entry existed, else 0
local existed = redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return existed
