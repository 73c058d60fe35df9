-- lock_release: frees a lock held with this token.
-- KEYS[1] lock hash      <prefix>:lock:{<ns>/<id>}        fields token, owner, fence, acquired, expires
-- ARGV[1] SHA-256 (hex) of the caller's lock token
-- Reply: 1 released; 0 not locked; -1 another token holds it
local token = redis.call('HGET', KEYS[1], 'token')
if not token then
  return 0
end
if token ~= ARGV[1] then
  return -1
end
redis.call('DEL', KEYS[1])
return 1
