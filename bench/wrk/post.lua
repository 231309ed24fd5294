-- POST one fixed body (read from BENCH_BODY_FILE) with BENCH_CONTENT_TYPE and BENCH_ACCEPT;
-- at the end, print one JSON line with the counts and latency percentiles (microseconds).
local function read_file(path)
  local f = assert(io.open(path, "rb"))
  local data = f:read("*all")
  f:close()
  return data
end

wrk.method = "POST"
wrk.body = read_file(os.getenv("BENCH_BODY_FILE"))
wrk.headers["Content-Type"] = os.getenv("BENCH_CONTENT_TYPE") or "application/json"
local deadline = os.getenv("BENCH_DEADLINE_MS")
if deadline and deadline ~= "" then
  wrk.headers["X-Deadline-Ms"] = deadline
end
local accept = os.getenv("BENCH_ACCEPT")
if accept and accept ~= "" then
  wrk.headers["Accept"] = accept
end

-- Each wrk thread has its own Lua state: count there, sum the threads' counts in done().
local threads = {}
setup = function(thread)
  table.insert(threads, thread)
end

non2xx = 0
statuses = ""
response = function(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
    if non2xx <= 3 then
      statuses = statuses .. status .. " "
    end
  end
end

done = function(summary, latency, requests)
  local non2xx = 0
  for _, thread in ipairs(threads) do
    non2xx = non2xx + thread:get("non2xx")
    io.write("BENCH_STATUSES " .. thread:get("statuses") .. "\n")
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "non2xx": %d, "socket_errors": %d, ' ..
    '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f}\n',
    summary.requests, summary.duration, non2xx, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
