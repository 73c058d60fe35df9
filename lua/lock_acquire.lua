-- lock_acquire: takes a free lock and gives it the next fence.
-- KEYS[1] lock hash      <prefix>:lock:{<ns>/<id>}        fields token, owner, fence, acquired, expires
-- KEYS[2] fence counter  <prefix>:lock:{<ns>/<id>}:fence  never expires, so fences only grow
-- ARGV[1] SHA-256 (hex) of the new lock token (the token itself is never stored)
-- ARGV[2] owner (JSON, shown to others)
-- ARGV[3] ttl (ms)
-- ARGV[4] cap on total hold time (ms, 0 = none)
-- Reply: {1, fence, expires_ms, ttl_ms, ""}           acquired
--        {0, fence, expires_ms, remaining_ms, owner}  held by someone (their values)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local held = redis.call('HMGET', KEYS[1], 'owner', 'fence', 'expires')
if held[1] then
  return {0, tonumber(held[2]), tonumber(held[3]), redis.call('PTTL', KEYS[1]), held[1]}
end
local ttl = tonumber(ARGV[3])
local cap = tonumber(ARGV[4])
if cap > 0 and cap < ttl then
  ttl = cap
end
local fence = redis.call('INCR', KEYS[2])
local expires = now + ttl
redis.call('HSET', KEYS[1], 'token', ARGV[1], 'owner', ARGV[2], 'fence', fence,
  'acquired', now, 'expires', expires)
redis.call('PEXPIRE', KEYS[1], ttl)
return {1, fence, expires, ttl, ''}
