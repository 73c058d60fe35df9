-- lease_release: frees a fleet fetch lease only while the caller's token still holds
-- it, so a leader whose lease ran out never frees the one another instance took.
-- KEYS[1] the lease (<prefix>:<cache key>:lease), a string holding the token
-- ARGV[1] the caller's lease token
-- Reply: 1 released; 0 held by another token, or free
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
else
  return 0
end
