"""Demo data: a few members with a history worth looking at, and one API key per scope."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterator

from sqlalchemy.orm import Session

from loyalty.auth.services import create_key
from loyalty.db import transaction, utcnow
from loyalty.ledger import services as ledger
from loyalty.ledger.models import Account, TransactionKind
from loyalty.members import services as members
from loyalty.program.services import get_settings

DEMO_MEMBERS = [
    # external id, name, email, [(days ago, points earned)]
    ("cust_1001", "Ada Lovelace", "ada@example.com", [(200, 1200), (340, 300), (3, 450)]),
    ("cust_1002", "Grace Hopper", "grace@example.com", [(40, 800), (10, 2500)]),
    ("cust_1003", "Alan Turing", "alan@example.com", [(1, 150)]),
]


def seed(session: Session, now: dt.datetime | None = None) -> Iterator[str]:
    """Enroll the demo members (once: re-seeding leaves their history alone), give them
    earnings in the past so the card shows pending and soon-expiring points, and yield
    lines to print, ending with fresh API keys."""
    now = now or utcnow()
    settings = get_settings(session)
    for external_id, name, email, earnings in DEMO_MEMBERS:
        member, created = members.enroll(
            session, {"external_id": external_id, "name": name, "email": email}
        )
        if not created:
            yield f"member {external_id} already enrolled"
            continue
        with transaction(session):
            balance = ledger.lock_balance(session, member.id)
            for days_ago, points in earnings:
                ledger.credit(
                    session,
                    balance,
                    settings,
                    points,
                    kind=TransactionKind.EARN,
                    source=Account.ISSUED,
                    now=now - dt.timedelta(days=days_ago),
                    pending=True,
                    reference=f"demo-order-{external_id}-{days_ago}",
                )
            ledger.settle(session, balance, now)
        yield f"member {external_id} enrolled with {len(earnings)} past orders"
    stamp = now.strftime("%Y%m%d%H%M%S")
    yield "API keys (shown once):"
    for scope in ("checkout", "app", "admin"):
        # A random suffix: seeding twice within one second must not reuse a key name.
        _, raw = create_key(session, f"demo-{scope}-{stamp}-{secrets.token_hex(3)}", [scope])
        yield f"  {scope:<9} {raw}"
