-- Quote: POST /v1/orders/quote with a three-line cart for a random member (no side effects,
-- so no Idempotency-Key).
local bench = require("common")
local cart = require("cart")
bench.install()

function request()
  return wrk.format("POST", "/v1/orders/quote", bench.headers(nil), cart.body(bench.random_member()))
end
