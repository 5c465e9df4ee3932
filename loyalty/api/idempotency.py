"""The Idempotency-Key header on every POST under /v1.

before_request claims the key in the request's transaction (or replays the stored answer);
the view's work then runs in an outer transaction scope, and after_request stores the
response in that same transaction before committing: claim, work and answer are saved
together or not at all, in one transaction.
"""

from __future__ import annotations

from flask import Flask, Response, current_app, g, request
from sqlalchemy.exc import DBAPIError

from loyalty.api.auth import API_PREFIX, current_caller
from loyalty.api.errors import handle_unexpected
from loyalty.db import close_outer_scope, open_outer_scope
from loyalty.errors import ValidationFailed
from loyalty.extensions import db
from loyalty.idempotency import services as idempotency

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"


def _claim_key() -> Response | None:
    key = request.headers.get(HEADER)
    if request.method != "POST" or key is None or not request.path.startswith(API_PREFIX):
        return None
    if request.url_rule is None:
        return None
    if not 1 <= len(key) <= 255:
        raise ValidationFailed({HEADER: ["Must be 1 to 255 characters."]})
    if "\x00" in key:
        # PostgreSQL text cannot hold it; refused like any other bad key, never a 500.
        raise ValidationFailed({HEADER: ["Must not contain NUL (\\u0000)."]})
    fingerprint = idempotency.request_fingerprint(
        request.method, request.full_path, request.get_data(cache=True)
    )
    caller = current_caller()
    session = db.session()
    try:
        record_id, stored = idempotency.claim(session, caller.key_id, key, fingerprint)
    except BaseException:
        session.rollback()
        raise
    if stored is not None:
        session.rollback()
        response = current_app.response_class(
            stored.body,
            status=stored.status,
            mimetype="application/problem+json" if stored.status >= 400 else "application/json",
        )
        response.headers[REPLAYED_HEADER] = "true"
        return response
    g.idempotency_record = record_id
    g.idempotency_claim = (caller.key_id, key, fingerprint)
    open_outer_scope(session)
    return None


def _store_response(response: Response) -> Response:
    record_id = g.pop("idempotency_record", None)
    if record_id is None:
        return response
    session = db.session()
    close_outer_scope(session)
    try:
        if response.status_code >= 500:
            # Nothing is kept, the claim included: a retry does the work.
            session.rollback()
            return response
        if response.status_code >= 400:
            # The work failed and must not be kept; its answer is kept so a retry gets the same.
            session.rollback()
            key_id, key, fingerprint = g.idempotency_claim
            idempotency.store_refusal(
                session,
                key_id,
                key,
                fingerprint,
                response.status_code,
                response.get_data(as_text=True),
            )
        else:
            idempotency.complete(
                session, record_id, response.status_code, response.get_data(as_text=True)
            )
        session.commit()
    except DBAPIError as error:
        # The database went away before the answer was stored, so the work (in the same
        # transaction) was not kept either, nor the claim: a retry does the work. Answered like
        # any request that finds the database down (503), not as an error escaping an
        # after_request hook (500).
        session.rollback()
        return handle_unexpected(error)
    return response


def init_app(app: Flask) -> None:
    app.before_request(_claim_key)
    app.after_request(_store_response)
