-- Member card: GET /v1/members/{id} for a random member.
local bench = require("common")
bench.install()

function request()
  return wrk.format("GET", "/v1/members/" .. bench.random_member(), bench.headers(nil), nil)
end
