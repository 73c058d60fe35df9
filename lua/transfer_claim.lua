-- transfer_claim: hands the payload out exactly once, and only to its audience: the
-- audience check and the delete are one step, so a wrong audience consumes nothing.
-- KEYS[1] transfer hash  <prefix>:xfer:{<sha256 hex of token>}   fields audience, payload
-- ARGV[1] audience the claimant speaks for
-- Reply: {1, payload} claimed (now deleted); {0, ""} gone (used, expired, unknown);
--        {-1, ""} wrong audience (kept)
local h = redis.call('HMGET', KEYS[1], 'audience', 'payload')
if not h[1] then
  return {0, ''}
end
if h[1] ~= ARGV[1] then
  return {-1, ''}
end
redis.call('DEL', KEYS[1])
return {1, h[2]}
