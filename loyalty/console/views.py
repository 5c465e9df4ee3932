"""Console pages: thin views over the same services the API uses."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import marshmallow as ma
from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext
from flask_wtf import FlaskForm
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from loyalty import days
from loyalty.api.errors import flatten_messages, refusal_messages
from loyalty.api.replica import reads_from_replica, remember_console_write
from loyalty.audit import services as audit
from loyalty.console import blp, charts, formatting, forms, insight, security
from loyalty.db import utcnow
from loyalty.errors import LoyaltyError
from loyalty.extensions import db
from loyalty.members.models import MemberStatus
from loyalty.membership import adjustments, overview
from loyalty.membership import services as members
from loyalty.pagination import cursor_to, position_of
from loyalty.program import services as program
from loyalty.reports import services as reports
from loyalty.schemas.program import ProgramSchema, settings_changes, settings_to_dict

blp.before_app_request(security.refuse_nul)
blp.before_request(security.guard)
blp.after_app_request(security.secure_headers)
blp.after_request(remember_console_write)
blp.context_processor(security.template_globals)
blp.add_app_template_filter(formatting.money, "money")
blp.add_app_template_filter(formatting.moment, "moment")
blp.add_app_template_filter(formatting.day, "day")
blp.add_app_template_filter(formatting.clock, "clock")
blp.add_app_template_filter(formatting.number, "number")
blp.add_app_template_filter(formatting.decimal1, "decimal1")
blp.add_app_template_filter(formatting.points, "points")
blp.add_app_template_filter(formatting.percent_bp, "percent_bp")
blp.add_app_template_filter(formatting.trigger, "trigger")
blp.add_app_template_filter(formatting.experiment_target, "experiment_target")
blp.add_app_template_filter(formatting.rate, "rate")
blp.add_app_template_filter(formatting.rate_difference, "rate_difference")
blp.add_app_template_filter(formatting.relative, "relative")
blp.add_app_template_filter(formatting.money_mean, "money_mean")
blp.add_app_template_filter(formatting.p_value, "p_value")


@blp.errorhandler(HTTPException)
def http_error(error: HTTPException) -> tuple[str, int]:
    return render_template("console/error.html", error=error), error.code or 500


@blp.errorhandler(CSRFError)
def csrf_error(error: CSRFError) -> tuple[str, int]:
    error.description = gettext("The form's security token is missing or stale; reload the page.")
    return render_template("console/error.html", error=error), 400


@blp.errorhandler(LoyaltyError)
def domain_error(error: LoyaltyError) -> tuple[str, int]:
    return render_template("console/error.html", error=error), error.status


@blp.route("/login", methods=["GET", "POST"])
def login() -> Response | str | tuple[str, int]:
    form = forms.LoginForm()
    if form.validate_on_submit():
        if security.sign_in(form.api_key.data or "") is None:
            return render_template("console/login.html", form=form, failed=True), 401
        target = request.args.get("next", "")
        # Only our own pages: never an open redirect.
        if not target.startswith("/admin") or target.startswith("//"):
            target = url_for("console.dashboard")
        return redirect(target)
    status = 401 if form.is_submitted() else 200
    return render_template("console/login.html", form=form, failed=form.is_submitted()), status


@blp.post("/logout")
def logout() -> Response:
    security.sign_out()
    return redirect(url_for("console.login"))


@blp.get("/")
@reads_from_replica
def dashboard() -> str:
    session = db.session()
    today = days.today(utcnow(), formatting.zone())
    activity = reports.activity(session, today - dt.timedelta(days=89), today)
    return render_template(
        "console/dashboard.html",
        liability=reports.liability(session),
        activity=activity,
        chart=charts.activity_chart(activity.days),
    )


@blp.get("/members/<external_id>")
def member_page(external_id: str) -> str:
    found = overview.overview(db.session(), external_id, request.args.get("cursor") or None)
    figures, no_figures = insight.member_insight(external_id)
    return render_template(
        "console/member.html",
        member=found,
        insight=figures,
        no_insight=no_figures,
        labels=insight.SEGMENT_LABELS,
        adjust_form=forms.AdjustForm(formdata=None),
        status_form=forms.StatusForm(formdata=None, status=found.card.status),
        merge_form=forms.MergeForm(formdata=None),
        erase_form=forms.EraseForm(formdata=None),
    )


def _flash_outcome(write: Callable[[], object], done: str) -> None:
    """Run a write for a member's page and flash how it went: `done`, or the refusal."""
    try:
        write()
    except LoyaltyError as error:
        flash(" ".join(_refusal_lines(error)), "error")
    else:
        flash(done, "ok")


def _refusal_lines(error: LoyaltyError) -> list[str]:
    messages = refusal_messages(error)
    return [
        " ".join(lines) if name == "_schema" else f"{name}: {' '.join(lines)}"
        for name, lines in messages.items()
    ]


def _flash_form_errors(form: FlaskForm) -> None:
    for field_name, messages in form.errors.items():
        label = form[field_name].label.text if field_name in form else field_name
        flash(f"{label}: {' '.join(str(message) for message in messages)}", "error")


@blp.post("/members/<external_id>/adjust")
def adjust(external_id: str) -> Response:
    form = forms.AdjustForm()
    if not form.validate():
        _flash_form_errors(form)
    else:
        points: int = form.points.data
        reason: str = form.reason.data
        signed = f"{points:+d}"
        _flash_outcome(
            lambda: adjustments.adjust(db.session(), external_id, points, reason, security.actor()),
            gettext("Adjusted by %(points)s points.", points=signed),
        )
    return redirect(url_for("console.member_page", external_id=external_id))


@blp.post("/members/<external_id>/status")
def change_status(external_id: str) -> Response:
    form = forms.StatusForm()
    if not form.validate():
        _flash_form_errors(form)
    else:
        status = MemberStatus(form.status.data)
        changes = members.MemberChanges(status=status)
        _flash_outcome(
            lambda: members.update_member(db.session(), external_id, changes, security.actor()),
            gettext("Status is now %(status)s.", status=status.value),
        )
    return redirect(url_for("console.member_page", external_id=external_id))


@blp.route("/program", methods=["GET", "POST"])
def program_page() -> Response | str | tuple[str, int]:
    session = db.session()
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        form = forms.ProgramForm()
        if not form.validate():
            errors = forms.form_errors(form)
        else:
            try:
                loaded = ProgramSchema().load(form.body())
                program.update_settings(session, settings_changes(loaded), security.actor())
            except ma.ValidationError as error:
                errors = _program_field_errors(flatten_messages(error.messages))
            except LoyaltyError as error:
                errors = _program_field_errors(refusal_messages(error))
            else:
                flash(gettext("Program settings saved."), "ok")
                return redirect(url_for("console.program_page"))
    else:
        settings = settings_to_dict(program.settings_view(session))
        form = forms.ProgramForm(formdata=None, data=forms.ProgramForm.initial(settings))
    return render_template("console/program.html", form=form, errors=errors), 422 if errors else 200


def _program_field_errors(errors: dict[str, list[str]]) -> dict[str, list[str]]:
    """The API's field names (point_value.points) as the form's (point_value_points)."""
    renamed = {
        "expiry": "expiry_months",
        "expiry.months": "expiry_months",
        "expiry.policy": "expiry_policy",
    }
    return {renamed.get(k, k.replace(".", "_")): v for k, v in errors.items()}


@blp.get("/audit")
@reads_from_replica
def audit_log() -> str:
    target_type = request.args.get("target_type") or None
    target_id = request.args.get("target_id") or None
    cursor = request.args.get("cursor")
    entries, next_position = audit.entries(
        db.session(),
        target_type=target_type,
        target_id=target_id,
        since=None,
        until=None,
        limit=50,
        before_position=position_of(cursor),
    )
    return render_template(
        "console/audit.html",
        entries=entries,
        target_type=target_type,
        target_id=target_id,
        next_cursor=cursor_to(next_position),
    )
