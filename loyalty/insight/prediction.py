"""The refresh's lifetime-value model step: the buyers' inputs read from ``member_insight``
as arrays, BG/NBD and Gamma-Gamma fitted on them and their predictions written back
(``predict_and_store``, step 3 of ``loyalty.insight.services.refresh``). The models themselves
are pure computation in ``loyalty.insight.clv``, ``bgnbd`` and ``gamma_gamma``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy.orm import Session

from loyalty.db import utcnow
from loyalty.insight import bgnbd, clv, gamma_gamma
from loyalty.insight.bgnbd_limit import BgNbdLimit
from loyalty.insight.fitting import FitFailed
from loyalty.insight.models import MemberInsight, ModelStatus

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class ModelInputs:
    """The buyers of a refresh, one array element each, in the units the BG/NBD and
    Gamma-Gamma models take (time in days).

    - `frequency`: repeat purchase days (purchase days - 1);
    - `recency`: days from the first to the last purchase day;
    - `T`: days from the first purchase day to the day of `as_of`;
    - `monetary`: mean net value of a repeat purchase day, in minor units; 0 where there is
      no repeat purchase (the usual convention: Gamma-Gamma weighs it by frequency, so such
      a buyer gets the population's mean).
    """

    as_of: dt.datetime
    member_ids: IntArray
    frequency: FloatArray
    recency: FloatArray
    T: FloatArray  # the models' own name for it
    monetary: FloatArray

    def __len__(self) -> int:
        return len(self.member_ids)


@dataclass(frozen=True)
class ModelOutcome:
    """What the model step gives back. With status FITTED: the fitted parameters (JSON-able),
    the log-likelihood, the buyers it was fitted on, and per buyer (in the order of the
    inputs) the probability of being alive, the purchases expected over `horizon_days` and
    their discounted value in minor units, and in `detail` the fit's notes, if any: what the
    history did not identify and which limit of the model stands in (see
    ``loyalty.insight.bgnbd_limit``). Otherwise `detail` says why there is no model and the
    predictions stay NULL."""

    status: ModelStatus
    detail: str | None = None
    params: dict[str, Any] | None = None
    log_likelihood: float | None = None
    customers: int = 0
    horizon_days: int | None = None
    fitted_at: dt.datetime | None = None
    probability_alive: FloatArray | None = None
    expected_purchases: FloatArray | None = None
    predicted_value: FloatArray | None = None


# Predicted value covers the next 12 months, discounted at 10% a year (compounded monthly, each
# month's value discounted from its end: loyalty.insight.clv.predicted_value).
HORIZON_DAYS = 365
ANNUAL_DISCOUNT_RATE = 0.10


def predict_lifetime_value(inputs: ModelInputs) -> ModelOutcome:
    """The model step of the refresh: fit BG/NBD on every buyer's repeat purchase days and
    Gamma-Gamma on the repeat buyers' spend (``loyalty.insight.clv``), then predict per buyer,
    in the inputs' order, the probability of being alive, the purchases expected over
    HORIZON_DAYS and their discounted value. A history that shows no spread in dropout
    between buyers (few buyers, very regular ones) gets the model's limit, flagged in the
    parameters (`bg_nbd_limit`) and explained in `detail`. A history the models cannot be
    fitted on (no repeat purchases yet, too few to pin a parameter down) is no model, with the
    reason, not a failed refresh: the figures and segments stand without it."""
    if not len(inputs):
        return ModelOutcome(status=ModelStatus.NOT_FITTED, detail="no buyers yet")
    history = (inputs.frequency, inputs.recency, inputs.T)
    try:
        bg = bgnbd.fit_bg_nbd(*history)
        gg = gamma_gamma.fit_gamma_gamma(inputs.frequency, inputs.monetary)
    except FitFailed as failure:
        return ModelOutcome(
            status=ModelStatus.NOT_FITTED, detail=f"the model could not be fitted: {failure}"
        )
    # The fit takes the model's limit where a and b run off, and the predictions fall back
    # from the closed forms where those overflow; should anything still not be finite, that
    # model predicts nothing worth storing: no model, and why, rather than NaNs in member rows.
    with np.errstate(all="ignore"):
        alive = bgnbd.probability_alive(bg.params, *history)
        expected = bgnbd.expected_purchases(bg.params, HORIZON_DAYS, *history)
        value = clv.predicted_value(
            bg.params,
            gg.params,
            *history,
            inputs.monetary,
            horizon_days=HORIZON_DAYS,
            annual_discount_rate=ANNUAL_DISCOUNT_RATE,
        )
    if not all(np.isfinite(a).all() for a in (alive, expected, value)):
        return ModelOutcome(
            status=ModelStatus.NOT_FITTED,
            detail=f"the fitted model is degenerate ({bg.params}): its predictions overflow",
        )
    return ModelOutcome(
        status=ModelStatus.FITTED,
        # (insight_models.detail holds 500 characters; the notes take about 300 at most.)
        detail="; ".join(bg.notes + gg.notes)[:500] or None,
        params={
            "bg_nbd": dataclasses.asdict(bg.params),
            "bg_nbd_limit": isinstance(bg.params, BgNbdLimit),
            "gamma_gamma": dataclasses.asdict(gg.params),
            "gamma_gamma_customers": gg.customers,
            "gamma_gamma_log_likelihood": gg.log_likelihood,
            "annual_discount_rate": ANNUAL_DISCOUNT_RATE,
        },
        log_likelihood=bg.log_likelihood,
        customers=bg.customers,
        horizon_days=HORIZON_DAYS,
        fitted_at=utcnow(),
        probability_alive=alive,
        expected_purchases=expected,
        predicted_value=value,
    )


def predict_and_store(session: Session, as_of: dt.datetime) -> ModelOutcome:
    """The model step of the refresh: read the buyers' model inputs from ``member_insight``
    (filled by the figures step), predict (``predict_lifetime_value``) and, when a model was
    fitted, write the predictions into the buyers' rows. Returns the outcome."""
    mi = MemberInsight
    rows = session.execute(
        sa.select(
            mi.member_id,
            mi.frequency,
            mi.recency_days,
            mi.t_days,
            sa.func.coalesce(mi.monetary_value, 0),
        )
        .where(mi.orders > 0)
        .order_by(mi.member_id)
    ).all()
    table = np.array(rows, dtype=np.float64).reshape(len(rows), 5)
    inputs = ModelInputs(
        as_of=as_of,
        member_ids=np.array([row[0] for row in rows], dtype=np.int64),
        frequency=table[:, 1],
        recency=table[:, 2],
        T=table[:, 3],
        monetary=table[:, 4],
    )
    outcome = predict_lifetime_value(inputs)
    if outcome.status == ModelStatus.FITTED:
        _store_predictions(session, inputs, outcome)
    return outcome


def _store_predictions(session: Session, inputs: ModelInputs, outcome: ModelOutcome) -> None:
    """Write the model's predictions into the buyers' rows: through a temporary table filled
    with COPY and one UPDATE ... FROM on PostgreSQL, an executemany UPDATE on SQLite."""
    arrays = (outcome.probability_alive, outcome.expected_purchases, outcome.predicted_value)
    if any(a is None or len(a) != len(inputs) for a in arrays):
        raise ValueError("the model must predict every buyer of its inputs")
    alive, expected, value = (np.asarray(a, dtype=np.float64) for a in arrays)
    minor = np.rint(value)
    rows = [
        (int(member), _finite(p), _finite(e), None if not np.isfinite(v) else int(v))
        for member, p, e, v in zip(inputs.member_ids, alive, expected, minor, strict=True)
    ]
    if session.get_bind().dialect.name != "postgresql":
        table = MemberInsight.__table__
        session.connection().execute(
            sa.update(table)
            .where(table.c.member_id == sa.bindparam("m"))
            .values(
                probability_alive=sa.bindparam("p"),
                expected_purchases=sa.bindparam("e"),
                predicted_value=sa.bindparam("v"),
            ),
            [{"m": m, "p": p, "e": e, "v": v} for m, p, e, v in rows],
        )
        return
    session.execute(
        sa.text(
            "CREATE TEMPORARY TABLE IF NOT EXISTS insight_predictions (member_id bigint, "
            "probability_alive float8, expected_purchases float8, predicted_value bigint) "
            "ON COMMIT DROP"
        )
    )
    session.execute(sa.text("DELETE FROM insight_predictions"))
    cursor = session.connection().connection.cursor()
    with cursor.copy("COPY insight_predictions FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
    session.execute(
        sa.text(
            "UPDATE member_insight AS mi SET probability_alive = p.probability_alive, "
            "expected_purchases = p.expected_purchases, predicted_value = p.predicted_value "
            "FROM insight_predictions AS p WHERE mi.member_id = p.member_id"
        )
    )


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None
