-- Hold: POST /v1/redemptions for 100 points of a random member, with a unique
-- Idempotency-Key (a retried hold must not hold twice). run.py collects the holds this
-- creates and capture.lua captures them.
local bench = require("common")
bench.install()

function request()
  local ref = bench.next_id("hold")
  local body = string.format(
    '{"member_id": "%s", "points": 100, "order_id": "%s"}',
    bench.random_member(),
    ref
  )
  return wrk.format("POST", "/v1/redemptions", bench.headers("idem-" .. ref), body)
end
