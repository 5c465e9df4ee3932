-- Shared by the per-operation wrk scripts (bench/<operation>.lua). bench/run.py puts bench/
-- on LUA_PATH and passes everything as `-- key=value` arguments:
--
--   key=<API key>        sent as `Authorization: Bearer <key>` (the bare app ignores it)
--   members=LO-HI        member numbers to pick from, uniformly at random
--   member_prefix=m      external ids are <prefix><number, 6 digits>: m000042
--   run=<tag>            unique per run and app: every id written starts with it
--   threads=N            wrk's -t, so a thread can take its own slice of a pool file
--   pool=<path>          ids to work on (capture: redemption ids; refund: order ids)
--   idem=0|1             send an Idempotency-Key header
--
-- Every thread counts the responses that were not 2xx per status and keeps one body per
-- status as a sample; done() adds them up over the threads and prints one line,
-- "BENCH_RESULT {json}", that run.py parses (wrk's own report is printed too).

local M = {}

M.opts = {}
M.counter = 0

-- Per thread (each wrk thread has its own Lua state): read by done() through thread:get().
non2xx = {}
samples = {}
reused = 0
pool_size = -1

function M.parse_args(args)
  -- args[0] is the URL, the rest what follows `--`; pairs() visits all of them
  for _, arg in pairs(args or {}) do
    local key, value = tostring(arg):match("^([%w_]+)=(.*)$")
    if key then
      M.opts[key] = value
    end
  end
  local lo, hi = (M.opts.members or "1-1000"):match("^(%d+)-(%d+)$")
  M.member_lo, M.member_hi = tonumber(lo), tonumber(hi)
  M.threads = tonumber(M.opts.threads or "1")
  M.tid = tonumber(tid or 0) -- set by setup() below, in this thread's state
  M.run = M.opts.run or "run"
  M.prefix = M.opts.member_prefix or "m"
  M.idem = M.opts.idem == "1"
  math.randomseed(os.time() * 1000 + M.tid * 7919 + #M.run)
  -- LuaJIT's first few numbers after seeding are poorly spread
  for _ = 1, 10 do
    math.random()
  end
end

function M.random_member()
  return string.format("%s%06d", M.prefix, math.random(M.member_lo, M.member_hi))
end

-- A unique id for this run, thread and request: <run>-<kind>-t<thread>-<counter>
function M.next_id(kind)
  M.counter = M.counter + 1
  return string.format("%s-%s-t%d-%d", M.run, kind, M.tid, M.counter)
end

function M.headers(idempotency_key)
  local headers = {
    ["Authorization"] = "Bearer " .. (M.opts.key or ""),
    ["Content-Type"] = "application/json",
  }
  if M.idem and idempotency_key then
    headers["Idempotency-Key"] = idempotency_key
  end
  return headers
end

-- This thread's share of a pool file: lines i with i % threads == tid.
function M.load_pool()
  local items, i = {}, 0
  local path = M.opts.pool
  if not path then
    error("this script needs pool=<file>")
  end
  for line in io.lines(path) do
    if line ~= "" then
      if i % M.threads == M.tid then
        items[#items + 1] = line
      end
      i = i + 1
    end
  end
  pool_size = #items
  return items
end

function M.note_reuse()
  reused = reused + 1
end

-- The response callback every script installs: count anything that is not 2xx.
function M.response(status, headers, body)
  if status < 200 or status > 299 then
    local key = tostring(status)
    non2xx[key] = (non2xx[key] or 0) + 1
    if samples[key] == nil then
      samples[key] = string.sub(body or "", 1, 300)
    end
  end
end

-- Main-state side: thread ids and the final report.
local threads = {}

function M.setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

local function json_string(s)
  s = tostring(s)
  s = s:gsub('[%c"\\]', function(c)
    if c == '"' then
      return '\\"'
    elseif c == "\\" then
      return "\\\\"
    else
      return string.format("\\u%04x", string.byte(c))
    end
  end)
  return '"' .. s .. '"'
end

local function json_object(t)
  local parts = {}
  for k, v in pairs(t) do
    local value
    if type(v) == "table" then
      value = json_object(v)
    elseif type(v) == "number" then
      value = string.format("%.17g", v)
    else
      value = json_string(v)
    end
    parts[#parts + 1] = json_string(k) .. ":" .. value
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

function M.done(summary, latency, requests)
  local statuses, bodies, total_reused, pools = {}, {}, 0, {}
  for i, thread in ipairs(threads) do
    for status, count in pairs(thread:get("non2xx") or {}) do
      statuses[status] = (statuses[status] or 0) + count
    end
    for status, body in pairs(thread:get("samples") or {}) do
      bodies[status] = bodies[status] or body
    end
    total_reused = total_reused + (thread:get("reused") or 0)
    pools[tostring(i - 1)] = thread:get("pool_size") or -1
  end
  local result = {
    requests = summary.requests,
    duration_us = summary.duration,
    bytes = summary.bytes,
    errors = {
      connect = summary.errors.connect,
      read = summary.errors.read,
      write = summary.errors.write,
      status = summary.errors.status,
      timeout = summary.errors.timeout,
    },
    non2xx = statuses,
    samples = bodies,
    reused = total_reused,
    pool_sizes = pools,
    latency_us = {
      p50 = latency:percentile(50),
      p90 = latency:percentile(90),
      p95 = latency:percentile(95),
      p99 = latency:percentile(99),
      max = latency.max,
      mean = latency.mean,
    },
  }
  io.write("BENCH_RESULT " .. json_object(result) .. "\n")
end

-- Install the hooks every script shares; a script defines request() (and init() if it
-- needs more than parse_args).
function M.install()
  setup = M.setup
  response = M.response
  done = M.done
  init = function(args)
    M.parse_args(args)
  end
end

return M
