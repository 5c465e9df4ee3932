"""Service commands from the JSON bodies tests write, loaded by the API's own schemas (so a
test calling a service sees exactly what a request would give it)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from loyalty.events.services import RecordEvent
from loyalty.membership.services import EnrollMember
from loyalty.orders.refunds import RefundOrder
from loyalty.orders.services import PlaceOrder
from loyalty.rules.services import RuleDefinition
from loyalty.schemas.members import EnrollSchema
from loyalty.schemas.orders import EventInSchema, OrderInSchema, RefundInSchema
from loyalty.schemas.rules import RuleInSchema
from loyalty.schemas.tiers import TierInSchema
from loyalty.tiers.definitions import TierDefinition


def _as_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _as_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_as_json(item) for item in value]
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def order_command(body: dict[str, Any]) -> PlaceOrder:
    command: PlaceOrder = OrderInSchema().load(_as_json(body))
    return command


def refund_command(body: dict[str, Any]) -> RefundOrder:
    command: RefundOrder = RefundInSchema().load(_as_json(body))
    return command


def event_command(body: dict[str, Any]) -> RecordEvent:
    command: RecordEvent = EventInSchema().load(_as_json(body))
    return command


def enrollment(body: dict[str, Any]) -> EnrollMember:
    command: EnrollMember = EnrollSchema().load(_as_json(body))
    return command


def tier_definition(body: dict[str, Any]) -> TierDefinition:
    command: TierDefinition = TierInSchema().load(_as_json(body))
    return command


def rule_definition(body: dict[str, Any]) -> RuleDefinition:
    command: RuleDefinition = RuleInSchema().load(_as_json(body))
    return command
