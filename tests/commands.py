"""Service commands from the JSON bodies tests write, loaded by the API's own schemas (so a
test calling a service sees exactly what a request would give it)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, cast

import marshmallow as ma

from loyalty.events.services import RecordEvent
from loyalty.membership.services import EnrollMember
from loyalty.orders.earning import QuoteCart
from loyalty.orders.refunds import RefundOrder
from loyalty.orders.services import PlaceOrder
from loyalty.program.services import SettingsChanges
from loyalty.rules.definitions import RuleDefinition
from loyalty.schemas.members import EnrollSchema
from loyalty.schemas.orders import EventInSchema, OrderInSchema, QuoteInSchema, RefundInSchema
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


def _load(schema: type[ma.Schema], body: dict[str, Any]) -> Any:
    return schema().load(_as_json(body))


def order_command(body: dict[str, Any]) -> PlaceOrder:
    return cast(PlaceOrder, _load(OrderInSchema, body))


def refund_command(body: dict[str, Any]) -> RefundOrder:
    return cast(RefundOrder, _load(RefundInSchema, body))


def event_command(body: dict[str, Any]) -> RecordEvent:
    return cast(RecordEvent, _load(EventInSchema, body))


def enrollment(body: dict[str, Any]) -> EnrollMember:
    return cast(EnrollMember, _load(EnrollSchema, body))


def tier_definition(body: dict[str, Any]) -> TierDefinition:
    return cast(TierDefinition, _load(TierInSchema, body))


def rule_definition(body: dict[str, Any]) -> RuleDefinition:
    return cast(RuleDefinition, _load(RuleInSchema, body))


def program_changes(columns: dict[str, Any]) -> SettingsChanges:
    """Settings changes by column name, as the tests write them."""
    return SettingsChanges(**columns)


def quote_command(body: dict[str, Any]) -> QuoteCart:
    return cast(QuoteCart, _load(QuoteInSchema, body))
