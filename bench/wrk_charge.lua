-- wrk script for bench/wrk.py: POST one charge per request, each wrk thread as one seller
-- (tokens from WRK_TOKENS, comma-separated), counting statuses per thread and printing one JSON
-- line of totals and latency percentiles (microseconds) at the end.
local tokens = {}
for token in string.gmatch(os.getenv("WRK_TOKENS") or "", "[^,]+") do
  table.insert(tokens, token)
end
local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("token", tokens[(counter - 1) % #tokens + 1])
  table.insert(threads, thread)
end

function init(args)
  statuses = {}
  wrk.method = "POST"
  wrk.body = os.getenv("WRK_BODY")
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. token
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
