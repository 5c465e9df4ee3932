"""The console's bulk grants: a page to create one (paste ids or pick a segment) beside the
list, and a page to watch one (its progress and report, refreshed while it runs). The form
is loaded by the API's own schema, so it refuses what the API refuses."""

from __future__ import annotations

import uuid
from typing import Any

import marshmallow as ma
from flask import redirect, render_template, url_for
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from werkzeug.wrappers import Response
from wtforms import IntegerField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Optional

from loyalty.api.errors import flatten_messages, refusal_messages
from loyalty.console import blp, security
from loyalty.errors import LoyaltyError
from loyalty.extensions import db
from loyalty.grants import services as grants
from loyalty.grants.models import JobState
from loyalty.insight import saved_segments
from loyalty.schemas.grants import BulkGrantInSchema

# The report lines the page shows; the API's report pages through all of them.
REPORT_LINES = 200
# Where the schema's field errors show on the form.
FIELDS = {
    "csv": "member_ids",
    "member_ids": "member_ids",
    "benefit.code": "benefit_code",
    "benefit.days": "benefit_days",
    "budget.points": "budget",
}


class BulkGrantForm(FlaskForm):
    reason = StringField(_l("Reason"))
    member_ids = TextAreaField(_l("Member ids (one a line, or a CSV file's text)"))
    segment = SelectField(
        _l("or a saved segment"),
        choices=[SelectChoice("", "—")],
        # The API's schema and service check the key; a segment deleted since the page was
        # read is refused by name, not as "not a valid choice".
        validate_choice=False,
    )
    points = IntegerField(_l("Points each"), validators=[Optional()])
    benefit_code = StringField(_l("or a benefit code"), validators=[Optional()])
    benefit_days = IntegerField(_l("held for days (empty: for good)"), validators=[Optional()])
    budget = IntegerField(_l("Budget in points (empty: none)"), validators=[Optional()])


def _form() -> BulkGrantForm:
    form = BulkGrantForm()
    found, _ = saved_segments.list_segments(db.session(), limit=200, after=None)
    form.segment.choices = [SelectChoice("", "—"), *(SelectChoice(s.key, s.name) for s in found)]
    return form


def _body(form: BulkGrantForm) -> dict[str, Any]:
    """The API's request body for what the form gathered (blank fields left out)."""
    body: dict[str, Any] = {"reason": (form.reason.data or "").strip()}
    if (form.member_ids.data or "").strip():
        body["csv"] = form.member_ids.data
    if form.segment.data:
        body["segment"] = form.segment.data
    if form.points.data is not None:
        body["points"] = form.points.data
    if (form.benefit_code.data or "").strip():
        body["benefit"] = {"code": form.benefit_code.data.strip(), "days": form.benefit_days.data}
    if form.budget.data is not None:
        body["budget"] = {"points": form.budget.data}
    return body


def _page(form: BulkGrantForm, errors: dict[str, list[str]]) -> str:
    jobs, _ = grants.list_jobs(db.session(), limit=50)
    return render_template("console/bulk_grants.html", form=form, errors=errors, jobs=jobs)


@blp.get("/bulk-grants")
def bulk_grant_list() -> str:
    return _page(_form(), {})


@blp.post("/bulk-grants")
def bulk_grant_create() -> Response | tuple[str, int]:
    form = _form()
    errors: dict[str, list[str]] = {}
    if not form.validate():
        errors = {name: [str(m) for m in messages] for name, messages in form.errors.items()}
    else:
        try:
            command = BulkGrantInSchema().load(_body(form))
            job, _ = grants.create_job(db.session(), command, security.actor())
        except ma.ValidationError as error:
            errors = flatten_messages(error.messages)
        except LoyaltyError as error:
            errors = refusal_messages(error)
        else:
            return redirect(url_for("console.bulk_grant_page", job_id=job.id))
    shown: dict[str, list[str]] = {}
    for name, messages in errors.items():
        shown.setdefault(FIELDS.get(name, name), []).extend(messages)
    return _page(form, shown), 422


@blp.get("/bulk-grants/<uuid:job_id>")
def bulk_grant_page(job_id: uuid.UUID) -> str:
    job = grants.get_job(db.session(), job_id)
    lines, more = grants.report(db.session(), job_id, limit=REPORT_LINES)
    return render_template(
        "console/bulk_grant.html",
        job=job,
        lines=lines,
        more=more is not None,
        watching=job.state in (JobState.QUEUED, JobState.RUNNING),
    )
