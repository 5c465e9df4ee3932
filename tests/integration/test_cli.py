"""The `loyalty` command line: schema, API keys, ledger checks, demo data, the OpenAPI file."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import Result
from flask import Flask

from loyalty.automations import firing
from loyalty.automations import services as automations
from loyalty.cli import main
from loyalty.cli.openapi import openapi_document
from loyalty.cli.serve import gunicorn_args
from loyalty.conclusions.results import experiment_results
from loyalty.experiments.models import Experiment, ExperimentStatus
from loyalty.extensions import db
from loyalty.insight.models import InsightModel, MemberInsight, ModelStatus
from loyalty.jobs import services as jobs
from loyalty.membership import services as membership
from tests.helpers import app_built

KEY_LINE = re.compile(r"^lk_[A-Za-z0-9_-]{20,}$")
DEMO_KEY_LINE = re.compile(r"^\s+(checkout|app|admin)\s+(lk_[A-Za-z0-9_-]+)$")


def run(app: Flask, *args: str) -> Result:
    return app.test_cli_runner().invoke(args=list(args))


def bearer(raw: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {raw}"}


def create_key(app: Flask, name: str, *scopes: str) -> str:
    options = [arg for scope in scopes for arg in ("--scope", scope)]
    result = run(app, "keys", "create", name, *options)
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines()[-1]


@pytest.fixture
def fresh_sqlite_app(tmp_path: Path) -> Iterator[Flask]:
    with app_built(f"sqlite:///{tmp_path / 'new.db'}") as app:
        yield app


# --- db ---------------------------------------------------------------------------------------


def test_db_upgrade_migrates_a_new_database(fresh_sqlite_app):
    client = fresh_sqlite_app.test_client()
    assert client.get("/readyz").status_code == 503

    result = run(fresh_sqlite_app, "db", "upgrade")

    assert result.exit_code == 0, result.output
    assert result.stdout == "database at head\n"
    assert client.get("/readyz").status_code == 200


@pytest.mark.committed  # the migration runs on db.engine, a connection of its own
def test_db_upgrade_is_harmless_on_a_migrated_database(app):
    result = run(app, "db", "upgrade")

    assert result.exit_code == 0, result.output
    assert app.test_client().get("/readyz").status_code == 200


# --- keys -------------------------------------------------------------------------------------


def test_keys_create_prints_the_key_alone_on_the_last_line(app):
    result = run(app, "keys", "create", "shop", "--scope", "checkout", "--scope", "app")

    assert result.exit_code == 0, result.output
    *preamble, last = result.stdout.splitlines()
    assert KEY_LINE.match(last)
    assert preamble
    assert all(last not in line for line in preamble)


def test_a_created_key_works_with_exactly_its_scopes(app):
    raw = create_key(app, "shop", "checkout", "app")
    client = app.test_client()

    assert client.get("/v1/members/nobody", headers=bearer(raw)).status_code == 404
    assert client.get("/v1/admin/program", headers=bearer(raw)).status_code == 403


def test_every_created_key_is_different(app):
    assert create_key(app, "one", "checkout") != create_key(app, "two", "checkout")


def test_keys_create_refuses_a_name_in_use(app):
    create_key(app, "shop", "checkout")

    result = run(app, "keys", "create", "shop", "--scope", "admin")

    assert result.exit_code == 1
    assert "already exists" in result.output
    assert "lk_" not in result.output


@pytest.mark.parametrize(
    "args",
    [["shop"], ["shop", "--scope", "root"]],
    ids=["no scope", "unknown scope"],
)
def test_keys_create_needs_a_known_scope(app, args):
    result = run(app, "keys", "create", *args)

    assert result.exit_code == 2
    assert "lk_" not in result.output


def test_keys_list_shows_every_key_but_never_the_key_itself(app):
    shop = create_key(app, "shop", "checkout")
    ops = create_key(app, "ops", "admin")
    run(app, "keys", "revoke", "ops")

    result = run(app, "keys", "list")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["shop", "ops"]
    assert lines[0].endswith("active")
    assert "revoked" in lines[1]
    for raw in (shop, ops):
        assert raw not in result.output
        assert raw.removeprefix("lk_")[8:] not in result.output


def test_keys_revoke_stops_the_key(app):
    raw = create_key(app, "shop", "checkout")
    client = app.test_client()
    assert client.get("/v1/members/nobody", headers=bearer(raw)).status_code == 404

    result = run(app, "keys", "revoke", "shop")

    assert result.exit_code == 0, result.output
    assert client.get("/v1/members/nobody", headers=bearer(raw)).status_code == 401


def test_keys_revoke_twice_is_harmless(app):
    create_key(app, "shop", "checkout")
    run(app, "keys", "revoke", "shop")

    assert run(app, "keys", "revoke", "shop").exit_code == 0


def test_keys_revoke_of_an_unknown_name_fails(app):
    result = run(app, "keys", "revoke", "nobody")

    assert result.exit_code == 1
    assert "No API key named 'nobody'" in result.output


# --- ledger -----------------------------------------------------------------------------------


@pytest.fixture
def some_activity(app: Flask) -> None:
    admin = bearer(create_key(app, "ops", "admin"))
    client = app.test_client()
    for external_id in ("m1", "m2"):
        assert (
            client.post("/v1/members", json={"external_id": external_id}, headers=admin).status_code
            == 201
        )
        for points in (500, -200, 50):
            response = client.post(
                f"/v1/admin/members/{external_id}/adjustments",
                json={"points": points, "reason": "test"},
                headers=admin,
            )
            assert response.status_code == 201


def test_ledger_verify_passes_a_clean_ledger(app, some_activity):
    result = run(app, "ledger", "verify")

    assert result.exit_code == 0, result.output
    assert result.stdout.strip().endswith("ok")
    assert result.stderr == ""


def test_ledger_verify_passes_an_empty_ledger(app):
    assert run(app, "ledger", "verify").exit_code == 0


def test_ledger_verify_fails_on_a_balance_that_disagrees_with_its_entries(app, some_activity):
    with app.app_context():
        db.session.execute(
            sa.text(
                "UPDATE member_balances SET available = available + 7 WHERE member_id = "
                "(SELECT id FROM members WHERE external_id = 'm2')"
            )
        )
        db.session.commit()

    result = run(app, "ledger", "verify")

    assert result.exit_code == 1
    assert "BREACH" in result.stderr
    assert "breach" in result.stdout


def test_help_shows_only_options_that_apply(app):
    result = app.test_cli_runner().invoke(main, ["--help"])

    assert result.exit_code == 0, result.output
    options = result.output.split("Options:")[1].split("Commands:")[0]
    assert options.split() == ["--help", "Show", "this", "message", "and", "exit."]
    for group in ("db", "demo", "jobs", "keys", "ledger", "serve"):
        assert f"  {group} " in result.output


# --- demo -------------------------------------------------------------------------------------


def demo_keys(result: Result) -> dict[str, str]:
    return {
        match[1]: match[2]
        for line in result.stdout.splitlines()
        if (match := DEMO_KEY_LINE.match(line))
    }


def test_demo_seed_prints_a_working_key_per_scope(app):
    result = run(app, "demo", "seed")

    assert result.exit_code == 0, result.output
    keys = demo_keys(result)
    assert set(keys) == {"checkout", "app", "admin"}
    client = app.test_client()
    assert client.get("/v1/admin/program", headers=bearer(keys["admin"])).status_code == 200
    for scope in ("checkout", "app"):
        assert client.get("/v1/admin/program", headers=bearer(keys[scope])).status_code == 403
    card = client.get("/v1/members/cust_1001", headers=bearer(keys["app"]))
    assert card.status_code == 200


def test_demo_automations_fire_on_the_demo_data(app):
    result = run(app, "demo", "seed")
    assert result.exit_code == 0, result.output

    with app.app_context():
        fired = firing.fire_due(db.session)
        listed, _ = automations.list_automations(db.session, active=None, limit=10, after=None)
        names = {a.public_id: a.current.name for a in listed}
        again = firing.fire_due(db.session)

    by_name = {names[public_id]: count for public_id, count in fired.fired.items()}
    assert by_name["Welcome"] == 0  # the demo's members enrolled before it existed
    for name in ("Win back after 90 quiet days", "Time to buy again"):
        assert by_name[name] > 0, by_name
    assert again.total == 0


def test_demo_seed_can_run_again(app):
    first = run(app, "demo", "seed")
    again = run(app, "demo", "seed")

    assert first.exit_code == 0, first.output
    assert again.exit_code == 0, again.output
    assert "already enrolled" in again.stdout
    assert set(demo_keys(again)) == {"checkout", "app", "admin"}
    assert set(demo_keys(again).values()).isdisjoint(demo_keys(first).values())


def test_demo_data_has_members_in_most_segments_and_a_fitted_model(app):
    result = run(app, "demo", "seed")

    assert result.exit_code == 0, result.output
    with app.app_context():
        segments = db.session.scalars(
            sa.select(MemberInsight.segment).where(MemberInsight.segment.is_not(None)).distinct()
        ).all()
        model = db.session.scalars(sa.select(InsightModel)).one()
    assert len(segments) >= 9, segments
    assert model.status == ModelStatus.FITTED, model.detail
    assert "lifetime-value model fitted" in result.output


def test_demo_data_has_a_finished_experiment_with_a_result(app):
    result = run(app, "demo", "seed")

    assert result.exit_code == 0, result.output
    with app.app_context():
        experiment = db.session.scalars(sa.select(Experiment)).one()
        report = experiment_results(db.session, experiment.public_id)
    assert (experiment.status, experiment.promoted_arm) == (ExperimentStatus.STOPPED, None)
    assert experiment.stopped_at == experiment.ends_at  # ended by its window
    assert report.results is not None
    assert sum(report.exposed.values()) == 600
    assert not report.results.sample_ratio.mismatch
    [bonus] = report.results.comparisons
    # The demo draws a real conversion uplift (34% against 22%): its interval shows it.
    assert 0 < bonus.conversion_uplift.low < 0.12 < bonus.conversion_uplift.high


def test_the_demo_pays_the_birthday_gift_its_tiers_advertise(app):
    run(app, "demo", "seed")

    with app.app_context():
        before = membership.card(db.session, "cust_1001")
        assert jobs.grant_birthdays(db.session) == 1
        after = membership.card(db.session, "cust_1001")
    assert before.progress.tier is not None
    gift = {"bronze": 100, "silver": 250, "gold": 500}[before.progress.tier.code]
    assert after.available == before.available + gift


def test_demo_data_keeps_every_ledger_invariant(app):
    run(app, "demo", "seed")

    result = run(app, "ledger", "verify")

    assert result.exit_code == 0, result.output


# --- openapi ----------------------------------------------------------------------------------


def test_openapi_export_writes_the_generated_document(app, tmp_path: Path):
    output = tmp_path / "spec" / "openapi.json"

    result = run(app, "openapi", "export", "--output", str(output))

    assert result.exit_code == 0, result.output
    assert output.read_text() == openapi_document(app)
    assert str(output) in result.stdout


def test_serve_binds_where_loyalty_bind_says_unless_told_otherwise(monkeypatch):
    """LOYALTY_BIND reaches gunicorn through gunicorn.conf.py: serve passes no --bind of its
    own unless --host or --port is given."""
    monkeypatch.setenv("LOYALTY_BIND", "0.0.0.0:9000")

    plain = gunicorn_args(None, None, None)
    port_only = gunicorn_args(None, 8080, None)

    assert "--bind" not in plain
    assert port_only[port_only.index("--bind") + 1] == "0.0.0.0:8080"


class _Stopped(Exception):
    """Ends a worker's loop in the tests below."""


def _database_gone() -> sa.exc.OperationalError:
    return sa.exc.OperationalError("SELECT 1", {}, Exception("server closed the connection"))


def test_a_looping_worker_outlives_a_pass_the_database_interrupted(app, monkeypatch):
    passes = iter([_database_gone(), "settled 1 members"])

    def one_pass(*_args):
        outcome = next(passes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    sleeps = []

    def sleep(seconds):
        sleeps.append(seconds)
        if len(sleeps) == 2:
            raise _Stopped

    monkeypatch.setattr("loyalty.cli.jobs._one_pass", one_pass)
    monkeypatch.setattr("loyalty.cli.jobs.time.sleep", sleep)
    result = run(app, "jobs", "run", "--loop", "3")

    assert isinstance(result.exception, _Stopped)
    assert "pass interrupted, database unavailable" in result.stderr
    assert "settled 1 members" in result.stdout
    assert sleeps == [3, 3]


def test_a_single_pass_the_database_interrupted_fails(app, monkeypatch):
    def one_pass(*_args):
        raise _database_gone()

    monkeypatch.setattr("loyalty.cli.jobs._one_pass", one_pass)
    result = run(app, "jobs", "run")

    assert isinstance(result.exception, sa.exc.OperationalError)
    assert result.exit_code != 0
