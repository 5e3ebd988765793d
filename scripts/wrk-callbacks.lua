-- wrk script for scripts/bench-ingest.sh: every request is a distinct Okra callback (a counter
-- in the body), spread over 500 records; reports p50/p99 and non-2xx answers on one line.
--   wrk -s scripts/wrk-callbacks.lua URL -- <run-id> [records]

local threads = {}
local counter = 0

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  run = args[1] or tostring(os.time())
  records = tonumber(args[2] or "500")
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  counter = counter + 1
  local n = counter * 64 + tid
  local body = string.format(
    '{"callback_type":"TRANSACTIONS","callback_code":"PERIODIC_TRANSACTIONS","record":"rec_%05d",' ..
    '"type":"CALLBACK","env":"production","status":"is_success","bankName":"Bench Bank",' ..
    '"new_transactions":%d,"nonce":"%s-%d-%d"}',
    n % records, n % 100, run, tid, counter)
  return wrk.format(nil, nil, nil, body)
end

function done(summary, latency, requests)
  local secs = summary.duration / 1e6
  local non2xx = summary.errors.status
  io.write(string.format(
    "RESULT rps=%.0f p50_ms=%.3f p99_ms=%.3f max_ms=%.3f requests=%d non2xx=%d socket_errors=%d\n",
    summary.requests / secs, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, summary.requests, non2xx,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
