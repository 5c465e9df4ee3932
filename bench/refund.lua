-- Refund: POST /v1/orders/{id}/refunds of one unit of one line, with a unique refund_id.
-- Each thread walks its own slice of the orders listed in pool=<file> (this run's orders,
-- from order.lua) in rounds: round r refunds one unit of sku r % 3, so every order takes up
-- to six refunds and consecutive requests hit different members. Past six rounds the pool
-- is exhausted; the script starts over and counts every request from then on as `reused` (the refunds then fail 422,
-- refund_exceeds_order, and are reported).
local bench = require("common")
local cart = require("cart")
bench.install()

local pool, position, round, exhausted = {}, 0, 0, false

function init(args)
  bench.parse_args(args)
  pool = bench.load_pool()
end

function request()
  position = position + 1
  if position > #pool then
    position, round = 1, round + 1
    if round >= 6 then
      round, exhausted = 0, true
    end
  end
  if exhausted then
    bench.note_reuse()
  end
  local refund_id = bench.next_id("ref")
  local body = string.format(
    '{"refund_id": "%s", "lines": [{"sku": "%s", "quantity": 1}]}',
    refund_id,
    cart.skus[(round % 3) + 1]
  )
  return wrk.format(
    "POST",
    "/v1/orders/" .. pool[position] .. "/refunds",
    bench.headers("idem-" .. refund_id),
    body
  )
end
