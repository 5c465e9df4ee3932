"""Webhook endpoints as admins manage them, and the log of what was delivered to each."""

from __future__ import annotations

import base64
import datetime as dt
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from loyalty.audit import services as audit
from loyalty.db import transaction, utcnow
from loyalty.errors import ValidationFailed
from loyalty.webhooks import targets
from loyalty.webhooks.models import (
    DeliveryStatus,
    OutboxEvent,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from loyalty.webhooks.outbox import EVENT_TYPES
from loyalty.webhooks.services import WebhookNotFound, active_endpoints


@dataclass(frozen=True, slots=True)
class NewWebhook:
    """An endpoint to register: where to send, and which event types ("*": all)."""

    url: str
    event_types: tuple[str, ...]
    description: str | None = None


@dataclass(frozen=True, slots=True)
class WebhookView:
    """A registered endpoint as its answer shows it (never its secret)."""

    public_id: uuid.UUID
    url: str
    event_types: tuple[str, ...]
    description: str | None
    created_at: dt.datetime


@dataclass(frozen=True, slots=True)
class CreatedWebhook:
    """A newly registered endpoint, with the signing secret shown only this once."""

    endpoint: WebhookView
    secret: str


@dataclass(frozen=True, slots=True)
class AttemptView:
    """One HTTP attempt of a delivery."""

    attempted_at: dt.datetime
    status_code: int | None
    error: str | None
    duration_ms: int


@dataclass(frozen=True, slots=True)
class DeliveryView:
    """A delivery of one event to one endpoint, with every attempt so far, oldest first."""

    public_id: uuid.UUID
    event_id: uuid.UUID  # the event's public id
    event_type: str
    status: DeliveryStatus
    attempts: tuple[AttemptView, ...]
    next_attempt_at: dt.datetime | None
    created_at: dt.datetime
    delivered_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class DeliveryLog:
    """One page of an endpoint's deliveries, newest first."""

    endpoint: WebhookView
    deliveries: tuple[DeliveryView, ...]
    next_position: int | None  # where the next page starts, if there is one


def _endpoint_view(endpoint: WebhookEndpoint) -> WebhookView:
    return WebhookView(
        public_id=endpoint.public_id,
        url=endpoint.url,
        event_types=tuple(endpoint.event_types),
        description=endpoint.description,
        created_at=endpoint.created_at,
    )


def create_endpoint(
    session: Session, new: NewWebhook, actor: str | None, *, allow_local: bool = False
) -> CreatedWebhook:
    """Register an endpoint and return it with its new signing secret (shown only now).

    Raises ValidationFailed for a URL that is not https or points to an address webhooks
    may not reach (both allowed to this machine with `allow_local`), or an unknown event
    type.
    """
    targets.check_url(new.url, allow_local=allow_local)
    unknown = sorted(set(new.event_types) - {*EVENT_TYPES, "*"})
    if unknown:
        raise ValidationFailed({"event_types": [f"Unknown: {', '.join(unknown)}."]})
    with transaction(session):
        endpoint = WebhookEndpoint(
            url=new.url,
            event_types=sorted(set(new.event_types)),
            # Standard base64, as the Standard Webhooks libraries read it.
            secret="whsec_" + base64.b64encode(secrets.token_bytes(24)).decode(),
            description=new.description,
            active=True,
        )
        session.add(endpoint)
        session.flush()
        after = {"url": endpoint.url, "event_types": endpoint.event_types}
        audit.record(session, actor, "webhook.create", "webhook", endpoint.public_id, None, after)
        return CreatedWebhook(endpoint=_endpoint_view(endpoint), secret=endpoint.secret)


def find_endpoint(session: Session, public_id: uuid.UUID) -> WebhookEndpoint:
    """The row of an endpoint that was not deleted, for the services that change it (views
    use ``delivery_log``). Raises WebhookNotFound."""
    endpoint = session.execute(
        sa.select(WebhookEndpoint).where(
            WebhookEndpoint.public_id == public_id, WebhookEndpoint.active.is_(True)
        )
    ).scalar_one_or_none()
    if endpoint is None:
        raise WebhookNotFound(f"No webhook with id {public_id}.")
    return endpoint


def list_endpoints(session: Session) -> list[WebhookView]:
    """The endpoints not deleted, oldest first."""
    return [_endpoint_view(endpoint) for endpoint in active_endpoints(session)]


def delete_endpoint(session: Session, public_id: uuid.UUID, actor: str | None) -> None:
    """Stop sending to the endpoint; its delivery log is kept. Raises WebhookNotFound."""
    with transaction(session):
        endpoint = find_endpoint(session, public_id)
        endpoint.active = False
        session.execute(
            sa.update(WebhookDelivery)
            .where(
                WebhookDelivery.endpoint_id == endpoint.id,
                WebhookDelivery.status == DeliveryStatus.PENDING.value,
            )
            .values(status=DeliveryStatus.FAILED.value, next_attempt_at=None)
        )
        audit.record(
            session, actor, "webhook.delete", "webhook", public_id, {"url": endpoint.url}, None
        )


def delivery_log(
    session: Session, endpoint_id: uuid.UUID, limit: int, before: int | None
) -> DeliveryLog:
    """The endpoint and one page of its deliveries, newest first, each with its event and
    every attempt. Raises WebhookNotFound."""
    endpoint = find_endpoint(session, endpoint_id)
    found, next_position = _deliveries(session, endpoint, limit, before)
    return DeliveryLog(
        endpoint=_endpoint_view(endpoint),
        deliveries=_delivery_views(session, found),
        next_position=next_position,
    )


def _delivery_views(session: Session, found: Sequence[WebhookDelivery]) -> tuple[DeliveryView, ...]:
    attempts = _attempts_of(session, [d.id for d in found])
    events = {
        row.id: row
        for row in session.execute(
            sa.select(OutboxEvent.id, OutboxEvent.public_id, OutboxEvent.type).where(
                OutboxEvent.id.in_({d.event_id for d in found})
            )
        )
    }
    return tuple(
        DeliveryView(
            public_id=d.public_id,
            event_id=events[d.event_id].public_id,
            event_type=events[d.event_id].type,
            status=DeliveryStatus(d.status),
            attempts=tuple(
                AttemptView(
                    attempted_at=a.attempted_at,
                    status_code=a.status_code,
                    error=a.error,
                    duration_ms=a.duration_ms,
                )
                for a in attempts[d.id]
            ),
            next_attempt_at=d.next_attempt_at,
            created_at=d.created_at,
            delivered_at=d.delivered_at,
        )
        for d in found
    )


def _deliveries(
    session: Session, endpoint: WebhookEndpoint, limit: int, before: int | None
) -> tuple[list[WebhookDelivery], int | None]:
    """The endpoint's delivery rows, newest first; returns (page, next position or None)."""
    stmt = (
        sa.select(WebhookDelivery)
        .where(WebhookDelivery.endpoint_id == endpoint.id)
        .order_by(WebhookDelivery.id.desc())
        .limit(limit + 1)
    )
    if before is not None:
        stmt = stmt.where(WebhookDelivery.id < before)
    found = list(session.execute(stmt).scalars())
    return found[:limit], found[limit - 1].id if len(found) > limit else None


def _attempts_of(session: Session, delivery_ids: Sequence[int]) -> dict[int, list[WebhookAttempt]]:
    found: dict[int, list[WebhookAttempt]] = {i: [] for i in delivery_ids}
    for attempt in session.execute(
        sa.select(WebhookAttempt)
        .where(WebhookAttempt.delivery_id.in_(list(delivery_ids)))
        .order_by(WebhookAttempt.id)
    ).scalars():
        found[attempt.delivery_id].append(attempt)
    return found


def redeliver(
    session: Session, endpoint_id: uuid.UUID, delivery_id: uuid.UUID, actor: str | None
) -> DeliveryView:
    """Queue a delivery to be sent again now, whatever its state; return it as queued.
    Raises WebhookNotFound."""
    with transaction(session):
        endpoint = find_endpoint(session, endpoint_id)
        delivery = session.execute(
            sa.select(WebhookDelivery).where(
                WebhookDelivery.public_id == delivery_id, WebhookDelivery.endpoint_id == endpoint.id
            )
        ).scalar_one_or_none()
        if delivery is None:
            raise WebhookNotFound(f"No delivery {delivery_id} for this webhook.")
        delivery.status, delivery.next_attempt_at = DeliveryStatus.PENDING, utcnow()
        audit.record(
            session,
            actor,
            "webhook.redeliver",
            "webhook",
            endpoint_id,
            None,
            {"delivery": str(delivery_id)},
        )
        session.flush()
        return _delivery_views(session, [delivery])[0]
