-- wrk: POST bodies and print a JSON summary at the end (WRK_JSON {...}).
-- BODY_FILE: one body, sent on every request. BODIES_FILE instead: one JSON body a line,
-- each connection walking the file from its own offset, so the server sees distinct rows.
local bodies = {}
if os.getenv("BODIES_FILE") then
  for line in io.lines(os.getenv("BODIES_FILE")) do
    bodies[#bodies + 1] = line
  end
  assert(#bodies > 0, "BODIES_FILE is empty")
else
  local f = assert(io.open(os.getenv("BODY_FILE"), "rb"))
  bodies[1] = f:read("*a")
  f:close()
end
wrk.method = "POST"
wrk.body = bodies[1]
wrk.headers["Content-Type"] = os.getenv("CONTENT_TYPE") or "application/json"
-- more headers, one "Name: value" per line (V2's Inference-Header-Content-Length)
for line in (os.getenv("EXTRA_HEADERS") or ""):gmatch("[^\n]+") do
  local name, value = line:match("^([^:]+):%s*(.*)$")
  if name then wrk.headers[name] = value end
end

local threads = {}
local thread_number = 0

function setup(thread)
  thread_number = thread_number + 1
  thread:set("offset", thread_number * 7919)
  table.insert(threads, thread)
end

function init(args)
  bad = 0
  statuses = {}
  position = (offset + math.floor(os.time() * 104729)) % #bodies
end

if #bodies > 1 then
  function request()
    position = position % #bodies + 1
    return wrk.format(nil, nil, nil, bodies[position])
  end
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    bad = bad + 1
    local key = tostring(status)
    statuses[key] = (statuses[key] or 0) + 1
  end
end

function done(summary, latency, requests)
  local non2xx = 0
  local by_status = {}
  for _, t in ipairs(threads) do
    non2xx = non2xx + t:get("bad")
    for status, count in pairs(t:get("statuses")) do
      by_status[#by_status + 1] = string.format('"%s": %d', status, count)
    end
  end
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "non2xx": %d, "errors": %d, ' ..
    '"p50_ms": %.3f, "p95_ms": %.3f, "p99_ms": %.3f, "max_ms": %.3f, ' ..
    '"non2xx_by_status": {%s}}\n',
    summary.requests, summary.duration, non2xx,
    summary.errors.connect + summary.errors.read + summary.errors.write +
      summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000, table.concat(by_status, ", ")))
end
