-- transfer_create: stores a one-time payload under the SHA-256 of its token.
-- KEYS[1] transfer hash  <prefix>:xfer:{<sha256 hex of token>}   fields audience, payload
-- ARGV[1] audience
-- ARGV[2] payload (JSON)
-- ARGV[3] ttl (ms)
-- Reply: expires_ms
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], 'audience', ARGV[1], 'payload', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return now + tonumber(ARGV[3])
