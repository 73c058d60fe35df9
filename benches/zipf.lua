-- wrk script: GET /bench/bytes/{size}/{prefix}{k} with k drawn from a zipf
-- distribution (s = 1) over `keys` keys: key 0 the most requested.
-- Usage: wrk -t1 -c50 -d10s -s benches/zipf.lua URL -- keys size prefix
local keys, size, prefix, cdf

function init(args)
  keys = tonumber(args[1])
  size = args[2]
  prefix = args[3]
  cdf = {}
  local total = 0
  for i = 1, keys do
    total = total + 1 / i
    cdf[i] = total
  end
  for i = 1, keys do
    cdf[i] = cdf[i] / total
  end
  math.randomseed(os.time())
end

function request()
  local r = math.random()
  local lo, hi = 1, keys
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if cdf[mid] < r then
      lo = mid + 1
    else
      hi = mid
    end
  end
  return wrk.format("GET", "/bench/bytes/" .. size .. "/" .. prefix .. (lo - 1))
end
