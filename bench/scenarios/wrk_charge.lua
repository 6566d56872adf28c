-- wrk script for bench/scenarios/http_load.py: POST one charge per request, the sellers' tokens (WRK_TOKENS,
-- comma-separated) shared out over the WRK_THREADS threads, counting statuses per thread and
-- printing one JSON line of totals and latency percentiles (microseconds) at the end.
local tokens = {}
for token in string.gmatch(os.getenv("WRK_TOKENS") or "", "[^,]+") do
  table.insert(tokens, token)
end
local threads = {}
local counter = 0
local nthreads = tonumber(os.getenv("WRK_THREADS") or "1")

-- Thread k takes every nthreads-th token from k: the sellers are spread over the threads, and
-- each thread's requests go round its own sellers.
function setup(thread)
  counter = counter + 1
  local mine = {}
  for i = counter, #tokens, nthreads do
    table.insert(mine, tokens[i])
  end
  if #mine == 0 then
    mine = { tokens[(counter - 1) % #tokens + 1] }
  end
  thread:set("my_tokens", table.concat(mine, ","))
  table.insert(threads, thread)
end

function init(args)
  statuses = {}
  own = {}
  for token in string.gmatch(my_tokens, "[^,]+") do
    table.insert(own, "Bearer " .. token)
  end
  turn = 0
  wrk.method = "POST"
  wrk.body = os.getenv("WRK_BODY")
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  turn = turn % #own + 1
  wrk.headers["Authorization"] = own[turn]
  return wrk.format()
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local totals = {}
  for _, thread in ipairs(threads) do
    local counts = thread:get("statuses")
    for status, n in pairs(counts) do
      totals[tostring(status)] = (totals[tostring(status)] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(totals) do
    table.insert(parts, string.format('"%s": %d', status, n))
  end
  io.write(string.format(
    'WRK_RESULT {"elapsed_us": %d, "requests": %d, "errors": %d, "statuses": {%s}, '
      .. '"p50_us": %d, "p90_us": %d, "p95_us": %d, "p99_us": %d, "p999_us": %d, "max_us": %d}\n',
    summary.duration, summary.requests,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    table.concat(parts, ", "),
    latency:percentile(50), latency:percentile(90), latency:percentile(95), latency:percentile(99),
    latency:percentile(99.9), latency.max
  ))
end
