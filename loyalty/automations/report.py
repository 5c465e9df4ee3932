"""The return on an automation (see loyalty.reports.campaigns): a touch is one firing."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.orm import Session

from loyalty.automations.exceptions import AutomationNotFound
from loyalty.automations.models import Automation, AutomationFiring, AutomationVersion
from loyalty.reports.campaigns import (
    CampaignKind,
    CampaignReport,
    Touches,
    campaign_report,
    check_window,
)


def automation_report(
    session: Session, automation_id: uuid.UUID, window_days: int
) -> CampaignReport:
    """The return on an automation, per version and in total: members it fired for, its
    firings, the points they granted and the orders that followed. Raises AutomationNotFound,
    ValidationFailed for a window outside 1..365 days."""
    check_window(window_days)
    automation = session.execute(
        sa.select(Automation.id, AutomationVersion.name)
        .join(
            AutomationVersion,
            sa.and_(
                AutomationVersion.automation_id == Automation.id,
                AutomationVersion.version == Automation.current_version,
            ),
        )
        .where(Automation.public_id == automation_id)
    ).one_or_none()
    if automation is None:
        raise AutomationNotFound(f"No automation with id {automation_id}.")
    versions = session.execute(
        sa.select(AutomationVersion.version, AutomationVersion.name, AutomationVersion.created_at)
        .where(AutomationVersion.automation_id == automation.id)
        .order_by(AutomationVersion.version.desc())
    ).all()
    touches = (
        sa.select(
            AutomationFiring.member_id,
            AutomationFiring.fired_at.label("touched_at"),
            AutomationFiring.version,
            AutomationFiring.points_granted.label("points"),
        )
        .where(AutomationFiring.automation_id == automation.id)
        .subquery("touches")
    )
    return campaign_report(
        session,
        kind=CampaignKind.AUTOMATION,
        campaign_id=automation_id,
        name=automation.name,
        versions=[(v.version, v.name, v.created_at) for v in versions],
        # A firing is caused by no order: every order after it may be its return.
        touches=Touches(touches, from_orders=False),
        window_days=window_days,
    )
