-- wrk script for scripts/bench-sources.sh: sends the pre-signed requests of a file made by
-- scripts/bench-sources.py (one a line: `POST PATH<TAB>header: value<TAB>...<TAB>BODY`), each
-- once; thread t of T takes lines t, t+T, t+2T… A thread that runs out starts its lines again
-- (those answer `duplicate`: the report counts them as `wrapped`). Reports p50/p99 on one line.
--   wrk -t THREADS -s scripts/wrk-sources.lua URL -- <requests file> THREADS

local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  -- Each thread has a Lua state of its own: the script is told how many there are.
  local nthreads = tonumber(args[2] or "1")
  reqs = {}
  local i = 0
  for l in io.lines(args[1]) do
    if i % nthreads == tid then
      local fields = {}
      for f in string.gmatch(l, "[^\t]+") do
        table.insert(fields, f)
      end
      local path = string.match(fields[1], "^POST (.*)$")
      local headers = { ["Content-Type"] = "application/json" }
      for h = 2, #fields - 1 do
        local k, v = string.match(fields[h], "^([^:]+): (.*)$")
        headers[k] = v
      end
      table.insert(reqs, wrk.format("POST", path, headers, fields[#fields]))
    end
    i = i + 1
  end
  next_req = 0
  wrapped = 0
end

function request()
  next_req = next_req + 1
  if next_req > #reqs then
    next_req = 1
    wrapped = wrapped + 1
  end
  return reqs[next_req]
end

function done(summary, latency, requests)
  local secs = summary.duration / 1e6
  local wraps = 0
  for _, t in ipairs(threads) do
    wraps = wraps + (t:get("wrapped") or 0)
  end
  io.write(string.format(
    "RESULT rps=%.0f p50_ms=%.3f p99_ms=%.3f max_ms=%.3f requests=%d non2xx=%d socket_errors=%d wrapped=%d\n",
    summary.requests / secs, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, summary.requests, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    wraps))
end
