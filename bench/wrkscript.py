"""The wrk Lua script of the ingest benchmark (wrk 4 with LuaJIT, as Debian ships it).

Each request is a heartbeat as the agent sends it (its clock check
included), about 440 bytes of JSON. Arguments after ``--``: the data file (one "NAME TOKEN" line per device),
how many answers to stop after in all (0: run for the whole duration), the
number of wrk threads and a path prefix: a thread that stopped after its
share of answers creates PREFIX<thread id>, since wrk itself only ends at
its duration or on SIGINT (which still runs ``done()``). Thread k rotates over the devices starting at device
k * n / threads. Every answer's status is counted; ``done()`` prints one
line "BENCH-JSON {...}" with wrk's summary, latency percentiles in
microseconds and, per thread, its first device, requests issued and status
counts.
"""

WRK_LUA = r'''
local threads = {}
local next_id = 0
BODY = '{"device":"%s","sent_at":%d.25,"seq":%d,"boot_id":"5f0c2a9e-8d1b-4c3a-9e7f-0a1b2c3d4e5f",' ..
  '"uptime_s":%d.5,"agent_started_at":%d.75,"send_failures":[],"version":"0.1.0",' ..
  '"time":{"verdict":"ok","reason":"synchronized by systemd-timesyncd","service":"systemd-timesyncd",' ..
  '"zone":"Europe/London","offset_ms":1.25,"jitter_ms":0.5,"checked_at":%d.5,"synchronized":true}}'

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  names, auth = {}, {}
  for line in io.lines(args[1]) do
    local name, token = line:match("^(%S+)%s+(%S+)$")
    if name then
      names[#names + 1] = name
      auth[#auth + 1] = "Bearer " .. token
    end
  end
  local nthreads = tonumber(args[3]) or 1
  stop_after = math.ceil((tonumber(args[2]) or 0) / nthreads)
  flag_prefix = args[4] or "/dev/null"
  n = #names
  first = math.floor(id * n / nthreads)
  pos = first
  issued, answered, s200, s4xx, s5xx, sother = 0, 0, 0, 0, 0, 0
  started = os.time() - 3600  -- the agents' start: the same in every beat, as while no agent restarts
end

function request()
  local i = pos % n + 1
  pos = pos + 1
  issued = issued + 1
  -- What the agent sends (appliance.agent.targets.phonehome_payload) with its clock check: the monitor keeps
  -- each device's last heartbeat, so its memory per device is measured with a real one.
  local now = os.time()
  local body = string.format(BODY, names[i], now, issued, issued, started, now)
  return wrk.format("POST", "/api/v1/heartbeat",
                    {["Content-Type"] = "application/json", ["Authorization"] = auth[i]}, body)
end

function response(status, headers, body)
  answered = answered + 1
  if status == 200 then s200 = s200 + 1
  elseif status >= 400 and status < 500 then s4xx = s4xx + 1
  elseif status >= 500 then s5xx = s5xx + 1
  else sother = sother + 1 end
  if stop_after > 0 and answered == stop_after then
    -- wrk runs for its whole duration even when every thread stopped: tell the caller, who sends SIGINT.
    local flag = io.open(flag_prefix .. id, "w")
    if flag then flag:close() end
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local parts = {}
  for _, t in ipairs(threads) do
    parts[#parts + 1] = string.format(
      '{"id":%d,"first":%d,"issued":%d,"answered":%d,"s200":%d,"s4xx":%d,"s5xx":%d,"sother":%d}',
      t:get("id"), t:get("first"), t:get("issued"), t:get("answered"), t:get("s200"), t:get("s4xx"),
      t:get("s5xx"), t:get("sother"))
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH-JSON {"duration_us":%.0f,"requests":%.0f,"bytes":%.0f,' ..
    '"errors":{"connect":%.0f,"read":%.0f,"write":%.0f,"status":%.0f,"timeout":%.0f},' ..
    '"latency_us":{"min":%.0f,"mean":%.1f,"p50":%.0f,"p90":%.0f,"p99":%.0f,"p99.9":%.0f,"max":%.0f},' ..
    '"threads":[%s]}\n',
    summary.duration, summary.requests, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, table.concat(parts, ",")))
end
'''
