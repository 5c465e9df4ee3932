"""Reading and changing the program settings."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from loyalty import days
from loyalty.audit import services as audit
from loyalty.changes import UNCHANGED, Maybe, given
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
    "referral_referrer_points": 0,
    "referral_friend_points": 0,
    "referral_max_per_period": None,
    "referral_period_days": 30,
    "time_zone": days.DEFAULT_ZONE,
}


UNKNOWN_ZONE = "Not an IANA time zone name (such as Asia/Shanghai or America/New_York)."


@dataclass(frozen=True, slots=True)
class SettingsView:
    """The program settings as an answer shows them (the row's column names)."""

    currency: str
    point_value_points: int
    point_value_amount: int
    pending_days: int
    expiry_policy: ExpiryPolicy
    expiry_months: int | None
    hold_ttl_seconds: int
    max_redemption_percent: int
    min_redemption_points: int
    tier_window_months: int
    referral_referrer_points: int
    referral_friend_points: int
    referral_max_per_period: int | None
    referral_period_days: int
    time_zone: str
    updated_at: dt.datetime


@dataclass(frozen=True, slots=True)
class SettingsChanges:
    """A change to some settings: those left UNCHANGED keep their values."""

    currency: Maybe[str] = UNCHANGED
    point_value_points: Maybe[int] = UNCHANGED
    point_value_amount: Maybe[int] = UNCHANGED
    pending_days: Maybe[int] = UNCHANGED
    expiry_policy: Maybe[ExpiryPolicy] = UNCHANGED
    expiry_months: Maybe[int | None] = UNCHANGED
    hold_ttl_seconds: Maybe[int] = UNCHANGED
    max_redemption_percent: Maybe[int] = UNCHANGED
    min_redemption_points: Maybe[int] = UNCHANGED
    tier_window_months: Maybe[int] = UNCHANGED
    referral_referrer_points: Maybe[int] = UNCHANGED
    referral_friend_points: Maybe[int] = UNCHANGED
    referral_max_per_period: Maybe[int | None] = UNCHANGED
    referral_period_days: Maybe[int] = UNCHANGED
    time_zone: Maybe[str] = UNCHANGED


def _view(settings: ProgramSettings) -> SettingsView:
    return SettingsView(
        currency=settings.currency,
        point_value_points=settings.point_value_points,
        point_value_amount=settings.point_value_amount,
        pending_days=settings.pending_days,
        expiry_policy=ExpiryPolicy(settings.expiry_policy),
        expiry_months=settings.expiry_months,
        hold_ttl_seconds=settings.hold_ttl_seconds,
        max_redemption_percent=settings.max_redemption_percent,
        min_redemption_points=settings.min_redemption_points,
        tier_window_months=settings.tier_window_months,
        referral_referrer_points=settings.referral_referrer_points,
        referral_friend_points=settings.referral_friend_points,
        referral_max_per_period=settings.referral_max_per_period,
        referral_period_days=settings.referral_period_days,
        time_zone=settings.time_zone,
        updated_at=settings.updated_at,
    )


def get_settings(session: Session) -> ProgramSettings:
    """Return the live row of program settings, for services that compute with it (their
    row is created by the first migration). Views use ``settings_view``."""
    settings = session.get(ProgramSettings, 1)
    if settings is None:
        raise RuntimeError("program settings are missing: run `loyalty db upgrade`")
    return settings


def settings_view(session: Session) -> SettingsView:
    """The program settings, as an answer shows them."""
    return _view(get_settings(session))


def update_settings(
    session: Session, changes: SettingsChanges, actor: str | None = None
) -> SettingsView:
    """Apply `changes` and return the new settings. Raises ValidationFailed when the
    combination is inconsistent (an expiry policy that needs months without any) or the time
    zone is not an IANA name this system knows."""
    if not days.is_zone(given(changes).get("time_zone", days.DEFAULT_ZONE)):
        raise ValidationFailed({"time_zone": [UNKNOWN_ZONE]})
    with transaction(session):
        settings = get_settings(session)
        before = audit.snapshot(settings)
        for name, value in given(changes).items():
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
        return _view(settings)
