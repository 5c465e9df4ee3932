-- Capture: POST /v1/redemptions/{id}/capture, each thread walking its own slice of the holds
-- listed in pool=<file> (created by hold.lua; run.py tops the pool up so it lasts). Should
-- the pool run out, it starts over and counts every request from then on as `reused`: run.py reports that as an error,
-- since capturing twice measures a replay, not a capture.
local bench = require("common")
bench.install()

local pool, position, exhausted = {}, 0, false

function init(args)
  bench.parse_args(args)
  pool = bench.load_pool()
end

function request()
  position = position + 1
  if position > #pool then
    position, exhausted = 1, true
  end
  if exhausted then
    bench.note_reuse()
  end
  local id = pool[position]
  return wrk.format(
    "POST",
    "/v1/redemptions/" .. id .. "/capture",
    bench.headers("idem-cap-" .. id),
    nil
  )
end
