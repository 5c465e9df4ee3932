"""Reading and changing the program settings."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from loyalty.audit import services as audit
from loyalty.db import transaction
from loyalty.errors import ValidationFailed
from loyalty.program import config
from loyalty.program.models import ExpiryPolicy, ProgramSettings

DEFAULTS: dict[str, Any] = {
    "currency": "USD",
    "point_value_points": 100,
    "point_value_amount": 100,
    "pending_days": 14,
    "expiry_policy": ExpiryPolicy.FIXED.value,
    "expiry_months": 12,
    "hold_ttl_seconds": 900,
    "max_redemption_percent": 50,
    "min_redemption_points": 100,
    "tier_window_months": 12,
}


def get_settings(session: Session) -> ProgramSettings:
    """Return the program settings (their row is created by the first migration)."""
    settings = session.get(ProgramSettings, 1)
    if settings is None:
        raise RuntimeError("program settings are missing: run `loyalty db upgrade`")
    return settings


def update_settings(
    session: Session, changes: dict[str, Any], actor: str | None = None
) -> ProgramSettings:
    """Apply `changes` (already type-checked by the schema) and return the new settings.

    Raises ValidationFailed when the combination is inconsistent (an expiry policy that
    needs months without any).
    """
    with transaction(session):
        settings = get_settings(session)
        before = audit.snapshot(settings)
        for name, value in changes.items():
            setattr(settings, name, value)
        if settings.expiry_policy == ExpiryPolicy.NEVER:
            settings.expiry_months = None
        elif settings.expiry_months is None:
            raise ValidationFailed(
                {"expiry": [f"months is required for the {settings.expiry_policy} policy."]}
            )
        session.flush()
        config.changed(session)
        audit.record(
            session, actor, "program.update", "program", 1, before, audit.snapshot(settings)
        )
    return settings
