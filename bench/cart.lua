-- The cart every quote and order sends: three lines of two units each and a discount, so an
-- order can take up to six one-unit refunds (bench/refund.lua).
local M = {}

M.skus = { "tee-black-m", "mug-white", "cap-navy" }

local LINES = '[{"sku": "tee-black-m", "category": "apparel", "quantity": 2, "unit_price": 2500},'
  .. ' {"sku": "mug-white", "category": "home", "quantity": 2, "unit_price": 1200},'
  .. ' {"sku": "cap-navy", "category": "accessories", "quantity": 2, "unit_price": 1800}]'

function M.body(member_id, extra)
  return string.format(
    '{%s"member_id": "%s", "currency": "USD", "discount": 500, "lines": %s}',
    extra or "",
    member_id,
    LINES
  )
end

return M
