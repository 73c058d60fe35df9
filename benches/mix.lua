-- wrk script: 4 requests in 5 are hits of the 100 keys shapes.py cached (fill) under
-- the prefix "mixhot"; the 5th asks for a key never seen before (unique per run
-- through the nonce argument) from an origin that answers after 5 ms.
-- Usage: wrk -t1 -c50 -d10s -s benches/mix.lua URL -- nonce
local nonce
local n = 0

function init(args)
  nonce = args[1]
end

function request()
  n = n + 1
  if n % 5 == 0 then
    return wrk.format("GET", "/bench/bytes/1024/m" .. nonce .. "-" .. n .. "?delay_ms=5")
  end
  return wrk.format("GET", "/bench/bytes/1024/mixhot" .. (n % 100))
end
