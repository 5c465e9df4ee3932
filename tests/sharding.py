"""Where every table would live on a database sharded by member (Citus), in one place.

docs/scaling.md explains this list and tests/unit/test_sharding_layout.py holds it to the
schema (every table classified, no stale names) and to the document. The checkout hot paths
are held to it by tests/api/test_single_member_statements.py, through ``statements.check``:

- DISTRIBUTED tables are sharded by member: a hot-path statement must pin every one it names
  to one member (its member column, a join on it, or a listed routed key: see ``Distributed``).
- REFERENCE tables are small, written by admins and copied to every node: hot paths may read
  them, never write them.
- LOCAL tables stay on the coordinator. Most are admin and batch work a hot path must never
  touch; the few a hot path does touch say why, and each statement may reach one of their
  rows only (by a unique key, or by the key a pinned row carries).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Distributed:
    """A table sharded by member.

    column: the member column, the distribution column on Citus.
    parent: (foreign key, parent table) for a child row that does not carry the member yet:
        it is co-located through its parent, and the first migration step copies the
        parent's member into it (docs/scaling.md, "The migration").
    routed: unique keys a request names a row by before its member is known (or a by-key
        statement after it), each with how a sharded deployment routes it. A statement may
        pin the table by one of them; the test then looks the row up and proves it is the
        request's member's.
    group: a column naming the member whose group a row joins (merged duplicates): a
        statement may pin ``column = m OR group = m``, the member and its merged duplicates.
    """

    column: str | None = "member_id"
    parent: tuple[str, str] | None = None
    routed: dict[str, str] = field(default_factory=dict)
    group: str | None = None


@dataclass(frozen=True)
class Reference:
    reason: str


@dataclass(frozen=True)
class Local:
    """A coordinator-only table; ``hot_path`` says why a hot path may touch one row of it
    (None: a hot path must not touch it at all)."""

    reason: str
    hot_path: str | None = None


# How the lookups by a row's own id are routed once sharded (docs/scaling.md, step 2).
BY_ROW_ID = "row id after the member is locked; sharded, the key is (member_id, id)"
DIRECTORY = "a directory table distributed by this key maps it to the member (step 3)"

DISTRIBUTED: dict[str, Distributed] = {
    "members": Distributed(
        column="id",
        routed={
            "external_id": "every checkout request names the member by it: " + DIRECTORY,
            "referral_code": "enrolment with a friend's code: " + DIRECTORY,
        },
        group="merged_into_id",
    ),
    "member_balances": Distributed(),
    "ledger_transactions": Distributed(routed={"id": BY_ROW_ID, "public_id": DIRECTORY}),
    "ledger_entries": Distributed(),
    "point_lots": Distributed(routed={"id": BY_ROW_ID}),
    "redemptions": Distributed(
        routed={
            "public_id": "capture and release name the hold by it: " + DIRECTORY,
            "id": BY_ROW_ID,
        }
    ),
    "redemption_allocations": Distributed(column=None, parent=("redemption_id", "redemptions")),
    "orders": Distributed(
        routed={
            "order_id": "refunds name the order, and orders claim it, by it: " + DIRECTORY,
            "id": BY_ROW_ID,
            "redemption_id": "the hold an order uses, after the member is locked; sharded, "
            "(member_id, redemption_id)",
        }
    ),
    "refunds": Distributed(
        column=None,
        parent=("order_pk", "orders"),
        routed={"refund_id": "a refund's retry is found by it: " + DIRECTORY},
    ),
    "quoted_carts": Distributed(),
    "member_events": Distributed(
        routed={"event_id": "an event's retry is found by it: " + DIRECTORY}
    ),
    "rule_awards": Distributed(),
    "tier_changes": Distributed(),
    "benefit_grants": Distributed(),
    "member_tokens": Distributed(
        routed={"token_hash": "the customer app signs in with it: " + DIRECTORY}
    ),
    # Codes are looked up by their text (validate, consume), which is not unique across
    # rewards: not a routed key (docs/scaling.md), and not among the checked hot paths.
    "reward_redemptions": Distributed(),
    "reward_allocations": Distributed(
        column=None, parent=("reward_redemption_id", "reward_redemptions")
    ),
    "automation_firings": Distributed(),
    "experiment_assignments": Distributed(),
    "member_insight": Distributed(),
    "segment_members": Distributed(),
    "segment_changes": Distributed(),
    # By the friend: the friend's enrolment, orders and refunds touch it; paying the referrer
    # (a job, after the return window) is the one write that reaches a second member.
    "referrals": Distributed(column="referred_id"),
}

REFERENCE: dict[str, Reference] = {
    "program_settings": Reference("one row, read by every request (config_version)"),
    "api_keys": Reference("every request authenticates by key hash"),
    "tiers": Reference("read by card, order, refund and event (tier review)"),
    "earning_rules": Reference("read by quote, order and event"),
    "earning_rule_versions": Reference("read by quote, order and event"),
    "rewards": Reference(
        "read by the catalogue and redemptions; a stocked reward's stock is a shared "
        "counter, so redeeming one writes a replicated row (docs/scaling.md)"
    ),
    "experiments": Reference("read at exposure (quote, order, event)"),
    "experiment_arms": Reference("read at exposure (quote, order, event)"),
    "automations": Reference("read by the jobs' evaluation and by event triggers"),
    "automation_versions": Reference("read with their automation"),
    "saved_segments": Reference("segment definitions read by rewards and experiments"),
}

LOCAL: dict[str, Local] = {
    "outbox_events": Local(
        "the transactional outbox, drained by the dispatcher",
        hot_path="every write emits its events in its own transaction; sharded, the row "
        "gains member_id and is distributed with the member (step 1), so the insert stays on "
        "the member's shard and the dispatcher polls every shard",
    ),
    "idempotency_keys": Local(
        "Idempotency-Key claims and stored answers, by (api key, key)",
        hot_path="claimed and answered in the request's own transaction, before the member "
        "is known; sharded, distributed by the key's hash, the commit spans the key's shard "
        "and the member's (a two-shard transaction), see docs/scaling.md",
    ),
    "rule_budget_usage": Local(
        "one counter per budgeted rule and period, shared by every member's earns",
        hot_path="an earn through a budgeted rule updates its counter row: a shared row by "
        "definition, so that earn spans the coordinator and the member's shard",
    ),
    "automation_budget_usage": Local("automation budgets: jobs only"),
    "reward_codes": Local("a reward's pool of loaded codes, claimed by any member's redemption"),
    "audit_log": Local("admin changes"),
    "console_sessions": Local("console sign-ins"),
    "webhook_endpoints": Local("read by the dispatcher"),
    "webhook_deliveries": Local("the dispatcher's and sender's queue"),
    "webhook_attempts": Local("the sender's log"),
    "insight_refreshes": Local("one row per insight refresh"),
    "insight_models": Local("one row per insight refresh"),
    "bulk_grants": Local("admin jobs"),
    "bulk_grant_targets": Local(
        "a job's list of external ids; each grant runs on its member's shard, the target's "
        "outcome is written beside it (a two-node transaction per target)"
    ),
}


def classified() -> set[str]:
    return set(DISTRIBUTED) | set(REFERENCE) | set(LOCAL)
