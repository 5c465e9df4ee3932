-- Event: POST /v1/events of type "review" with a unique event_id for a random member. run.py
-- adds an event rule for reviews (10 points each, no caps), so every event earns.
local bench = require("common")
bench.install()

function request()
  local event_id = bench.next_id("evt")
  local body = string.format(
    '{"event_id": "%s", "member_id": "%s", "type": "review"}',
    event_id,
    bench.random_member()
  )
  return wrk.format("POST", "/v1/events", bench.headers("idem-" .. event_id), body)
end
