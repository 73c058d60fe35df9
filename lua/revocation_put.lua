-- Records a revocation, keeping the latest: the stored instant only moves forward and
-- the key's lifetime only grows, so a repeated, late or older revocation never
-- shortens or weakens one already stored.
-- KEYS[1] the revocation key (<prefix>:revoked:jti:<sha256> | :sig:<sha256> | :sub:<sha256>)
-- ARGV[1] the instant, Unix ms: a token's expiresAt, or a subject's issuedBefore
-- ARGV[2] how long to keep the key from now, ms (> 0)
-- Reply: the instant stored after the call (the larger of the old and the new)
local new = tonumber(ARGV[1])
local keep = tonumber(ARGV[2])
local cur = redis.call('GET', KEYS[1])
if cur then
  cur = tonumber(cur)
end
local pttl = redis.call('PTTL', KEYS[1])
if pttl > keep then
  keep = pttl
end
if not cur or new > cur then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', keep)
  return new
end
redis.call('PEXPIRE', KEYS[1], keep)
return cur
