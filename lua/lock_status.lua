-- lock_status: who holds a lock, read in one step with its remaining time.
-- KEYS[1] lock hash      <prefix>:lock:{<ns>/<id>}        fields token, owner, fence, acquired, expires
-- ARGV none
-- Reply: {1, fence, expires_ms, remaining_ms, owner} held; {0, 0, 0, 0, ""} free
local h = redis.call('HMGET', KEYS[1], 'owner', 'fence', 'expires')
if not h[1] then
  return {0, 0, 0, 0, ''}
end
return {1, tonumber(h[2]), tonumber(h[3]), redis.call('PTTL', KEYS[1]), h[1]}
