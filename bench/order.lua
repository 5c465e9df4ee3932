-- Order: POST /v1/orders with a unique order_id for a random member. The ids start with the
-- run tag, so run.py finds this run's orders afterwards and refunds them (refund.lua).
local bench = require("common")
local cart = require("cart")
bench.install()

function request()
  local order_id = bench.next_id("ord")
  local body = cart.body(bench.random_member(), string.format('"order_id": "%s", ', order_id))
  return wrk.format("POST", "/v1/orders", bench.headers("idem-" .. order_id), body)
end
