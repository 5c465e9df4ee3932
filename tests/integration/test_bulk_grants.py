"""Bulk grants: a job names its members once, `run_due` grants each of them in batches the
way a single admin grant does, and the report says what each was given or why not. Time is
the test's: every service is called with its `now`."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from loyalty.audit.models import AuditEntry
from loyalty.errors import ValidationFailed
from loyalty.grants import services as grants
from loyalty.grants.exceptions import GrantIdReused
from loyalty.grants.models import JobState, Outcome, Refusal
from loyalty.grants.services import BenefitToGrant, NewBulkGrant
from loyalty.ledger.models import LedgerTransaction, MemberBalance, TransactionKind
from loyalty.members.models import MemberStatus
from loyalty.members.segments import SavedSegment, SegmentMember
from loyalty.privacy import erasure
from loyalty.tiers.models import BenefitGrant
from loyalty.webhooks.models import OutboxEvent
from tests.factories import MemberFactory

pytestmark = pytest.mark.usefixtures("ledger_verifies_after_each_test")

T0 = dt.datetime(2031, 3, 12, 12, tzinfo=dt.UTC)
T1 = T0 + dt.timedelta(hours=1)


def points_to(*ids: str, **fields) -> NewBulkGrant:
    return NewBulkGrant(reason="Sorry for the outage", points=100, member_ids=ids, **fields)


def available(session, member) -> int:
    session.expire_all()
    return session.scalar(
        sa.select(MemberBalance.available).where(MemberBalance.member_id == member.id)
    )


def lines(session, job) -> list[tuple[str, Outcome, Refusal | None, int]]:
    items, _ = grants.report(session, job.id, limit=200)
    return [(line.member_id, line.outcome, line.refusal, line.points) for line in items]


@pytest.fixture
def members(session):
    return [MemberFactory(external_id=f"m{n}", now=T0) for n in range(5)]


def test_a_job_is_queued_with_each_named_member_once(session, members):
    job, created = grants.create_job(session, points_to("m1", "m0", "m1", "nobody"), "ann", T0)

    assert created
    assert (job.state, job.total, job.done) == (JobState.QUEUED, 3, 0)
    assert lines(session, job) == [
        ("m1", Outcome.PENDING, None, 0),
        ("m0", Outcome.PENDING, None, 0),
        ("nobody", Outcome.PENDING, None, 0),
    ]


def test_running_grants_each_member_as_an_adjustment_and_reports_the_rest(session, members):
    members[2].status = MemberStatus.CLOSED
    session.flush()
    job, _ = grants.create_job(session, points_to("m0", "m1", "m2", "nobody"), "ann", T0)

    summary = grants.run_due(session, T1, batch_size=3)

    assert (summary.granted, summary.refused, summary.points) == (2, 2, 200)
    done = grants.get_job(session, job.id)
    assert (done.state, done.done, done.granted, done.refused, done.points_granted) == (
        JobState.DONE,
        4,
        2,
        2,
        200,
    )
    assert (done.started_at, done.finished_at) == (T1, T1)
    assert lines(session, job) == [
        ("m0", Outcome.GRANTED, None, 100),
        ("m1", Outcome.GRANTED, None, 100),
        ("m2", Outcome.REFUSED, Refusal.CLOSED_MEMBER, 0),
        ("nobody", Outcome.REFUSED, Refusal.UNKNOWN_MEMBER, 0),
    ]
    assert available(session, members[0]) == 100
    assert available(session, members[2]) == 0


def test_a_grant_is_the_same_ledger_transaction_audit_and_webhook_as_an_admin_grant(
    session, members
):
    job, _ = grants.create_job(session, points_to("m0"), "ann", T0)
    grants.run_due(session, T1)

    items, _ = grants.report(session, job.id, limit=10)
    txn = session.scalar(
        sa.select(LedgerTransaction).where(LedgerTransaction.public_id == items[0].transaction_id)
    )
    assert (txn.kind, txn.reason, txn.actor) == (
        TransactionKind.ADJUST,
        "Sorry for the outage",
        "ann",
    )
    entry = session.scalar(sa.select(AuditEntry).where(AuditEntry.action == "points.adjust"))
    assert (entry.actor, entry.target_id) == ("ann", "m0")
    assert entry.after["bulk_grant"] == str(job.id)
    created = session.scalar(sa.select(AuditEntry).where(AuditEntry.action == "bulk_grant.create"))
    assert created.after["total"] == 1
    event = session.scalar(sa.select(OutboxEvent).where(OutboxEvent.type == "points.adjusted"))
    assert event.payload == {"member_id": "m0", "points": 100, "reason": "Sorry for the outage"}


def test_a_budget_refuses_the_members_past_it(session, members):
    job, _ = grants.create_job(session, points_to("m0", "m1", "m2", budget_points=250), "ann", T0)

    grants.run_due(session, T1, batch_size=2)

    assert [line[1:3] for line in lines(session, job)] == [
        (Outcome.GRANTED, None),
        (Outcome.GRANTED, None),
        (Outcome.REFUSED, Refusal.OVER_BUDGET),
    ]
    assert grants.get_job(session, job.id).points_granted == 200


def test_a_benefit_is_granted_for_its_days_and_audited(session, members):
    command = NewBulkGrant(
        reason="Launch week",
        benefit=BenefitToGrant(code="free_shipping", days=7),
        member_ids=("m0", "m1"),
    )
    job, _ = grants.create_job(session, command, "ann", T0)

    grants.run_due(session, T1)

    held = session.scalars(sa.select(BenefitGrant).order_by(BenefitGrant.id)).all()
    assert [(g.code, g.ends_at, g.actor) for g in held] == [
        ("free_shipping", T1 + dt.timedelta(days=7), "ann")
    ] * 2
    audited = session.scalars(
        sa.select(AuditEntry.after).where(AuditEntry.action == "benefit.grant")
    ).all()
    assert [a["bulk_grant"] for a in audited] == [str(job.id)] * 2


def test_a_segment_job_names_the_segment_members_at_creation(session, members):
    segment = SavedSegment(key="vips", name="VIPs", filter={"tiers": ["gold"]})
    session.add(segment)
    session.flush()
    for member in members[3:]:
        session.add(SegmentMember(segment_id=segment.id, member_id=member.id, entered_at=T0))
    session.flush()

    job, _ = grants.create_job(
        session, NewBulkGrant(reason="VIP thanks", points=50, segment="vips"), "ann", T0
    )

    assert job.total == 2
    assert [line[0] for line in lines(session, job)] == ["m3", "m4"]


def test_an_unknown_segment_is_refused(session):
    with pytest.raises(ValidationFailed):
        grants.create_job(session, NewBulkGrant(reason="x", points=1, segment="nope"), "ann", T0)


def test_the_same_grant_id_and_request_returns_the_same_job(session, members):
    first, created = grants.create_job(session, points_to("m0", grant_id="g-1"), "ann", T0)
    again, created_again = grants.create_job(session, points_to("m0", grant_id="g-1"), "bob", T1)

    assert (created, created_again) == (True, False)
    assert again == first
    with pytest.raises(GrantIdReused):
        grants.create_job(session, points_to("m1", grant_id="g-1"), "ann", T1)


def test_running_again_grants_nothing_twice(session, members):
    grants.create_job(session, points_to("m0", "m1"), "ann", T0)
    grants.run_due(session, T1)

    assert grants.run_due(session, T1).granted == 0
    assert available(session, members[0]) == 100


def test_a_job_that_fails_is_marked_failed_and_the_pass_goes_on(session, members, monkeypatch):
    broken, _ = grants.create_job(session, points_to("m0"), "ann", T0)
    benefit = NewBulkGrant(reason="x", benefit=BenefitToGrant(code="lounge"), member_ids=("m1",))
    fine, _ = grants.create_job(session, benefit, "ann", T0)

    def fail(*args, **kwargs):
        raise ValueError("a bug in the grant")

    monkeypatch.setattr(grants, "adjust_member", fail)
    grants.run_due(session, T1)

    failed = grants.get_job(session, broken.id)
    assert (failed.state, failed.error, failed.done, failed.finished_at) == (
        JobState.FAILED,
        "a bug in the grant",
        0,
        T1,
    )
    assert lines(session, broken) == [("m0", Outcome.PENDING, None, 0)]
    assert grants.get_job(session, fine.id).state == JobState.DONE


def test_an_erased_member_is_named_by_their_pseudonym_in_reports(session, members):
    job, _ = grants.create_job(session, points_to("m0", "m1"), "ann", T0)
    grants.run_due(session, T1)

    erased = erasure.erase(session, "m0", "secret-key", "ann", T1)

    assert [line[0] for line in lines(session, job)] == [erased.pseudonym, "m1"]
