-- capacity_sync_take: leases up to N changed counter names of one shard to the caller
-- for posting to the origin. A lease that runs out (its instance died mid-post) puts
-- the name back in the dirty set first, so every change is delivered at least once.
-- KEYS[1] dirty set      <prefix>:cap:{capNN}:dirty
-- KEYS[2] leased zset    <prefix>:cap:{capNN}:syncing             name -> lease deadline (ms)
-- ARGV[1] batch size N
-- ARGV[2] lease duration (ms)
-- Reply: the leased counter names "<ns>/<id>"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, ARGV[1])
for _, name in ipairs(expired) do
  redis.call('SADD', KEYS[1], name)
  redis.call('ZREM', KEYS[2], name)
end
local names = redis.call('SPOP', KEYS[1], ARGV[1])
local deadline = now + tonumber(ARGV[2])
for _, name in ipairs(names) do
  redis.call('ZADD', KEYS[2], deadline, name)
end
return names
