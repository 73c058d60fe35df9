-- lock_renew: extends a lock held with this token; the fence stays the same.
-- KEYS[1] lock hash      <prefix>:lock:{<ns>/<id>}        fields token, owner, fence, acquired, expires
-- ARGV[1] SHA-256 (hex) of the caller's lock token
-- ARGV[2] new ttl from now (ms)
-- ARGV[3] cap on total hold time since acquisition (ms, 0 = none)
-- Reply: {1, fence, expires_ms} renewed; {0, 0, 0} not locked; {-1, 0, 0} another token holds it
local h = redis.call('HMGET', KEYS[1], 'token', 'fence', 'acquired')
if not h[1] then
  return {0, 0, 0}
end
if h[1] ~= ARGV[1] then
  return {-1, 0, 0}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expires = now + tonumber(ARGV[2])
local cap = tonumber(ARGV[3])
if cap > 0 then
  expires = math.min(expires, tonumber(h[3]) + cap)
end
if expires <= now then
  redis.call('DEL', KEYS[1])
  return {0, 0, 0}
end
redis.call('HSET', KEYS[1], 'expires', expires)
redis.call('PEXPIRE', KEYS[1], expires - now)
return {1, tonumber(h[2]), expires}
