"""Lifecycle automations: admin-defined moments (a trigger, conditions that narrow it) at
which loyalty tells the shop's messaging tools (an ``automation.fired`` webhook) and may
grant points through an earning rule, at most once per member per dedup key."""
