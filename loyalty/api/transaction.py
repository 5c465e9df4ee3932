"""One transaction for every write request to /v1, with or without an Idempotency-Key.

``before_request`` opens the request's scope, and claims the Idempotency-Key in it when the
request carries one (or replays the answer stored for it). The services' ``transaction()``
blocks join that scope, so nothing commits while the view runs. ``after_request`` ends it:
a success commits, with its answer stored under the key; a refusal or an error rolls
everything back, and a refusal (4xx) under a key is then stored on its own, so a retry gets
the same answer. Claim, work and answer are saved together or not at all.
"""

from __future__ import annotations

from flask import Flask, Response, current_app, g, request
from sqlalchemy.exc import DBAPIError

from loyalty.api.auth import API_PREFIX, current_caller
from loyalty.api.errors import handle_unexpected
from loyalty.db import close_scope, open_scope
from loyalty.errors import ValidationFailed
from loyalty.extensions import db
from loyalty.idempotency import services as idempotency

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _open() -> Response | None:
    if (
        request.method not in WRITE_METHODS
        or request.url_rule is None
        or not request.path.startswith(API_PREFIX)
    ):
        return None
    key = request.headers.get(HEADER)
    if key is not None and request.method == "POST":
        replay = _claim(key)
        if replay is not None:
            return replay
    open_scope(db.session())
    g.request_scope = True
    return None


def _claim(key: str) -> Response | None:
    """Claim `key` for this request; the stored answer when it is a retry of a finished one."""
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
    if stored is None:
        g.idempotency_record = record_id
        g.idempotency_claim = (caller.key_id, key, fingerprint)
        return None
    session.rollback()
    response = current_app.response_class(
        stored.body,
        status=stored.status,
        mimetype="application/problem+json" if stored.status >= 400 else "application/json",
    )
    response.headers[REPLAYED_HEADER] = "true"
    return response


def _close(response: Response) -> Response:
    if not g.pop("request_scope", False):
        return response
    session = db.session()
    close_scope(session)
    record_id = g.pop("idempotency_record", None)
    try:
        if response.status_code >= 400:
            session.rollback()
            if record_id is not None and response.status_code < 500:
                # The work is undone; its answer is kept so a retry gets the same. A server
                # error keeps nothing, the claim included: a retry does the work.
                key_id, key, fingerprint = g.idempotency_claim
                idempotency.store_refusal(
                    session,
                    key_id,
                    key,
                    fingerprint,
                    response.status_code,
                    response.get_data(as_text=True),
                )
                session.commit()
            return response
        if record_id is not None:
            idempotency.complete(
                session, record_id, response.status_code, response.get_data(as_text=True)
            )
        session.commit()
    except DBAPIError as error:
        # The database went away before the commit, so neither the work nor the claim was
        # kept: a retry does the work. Answered like any request that finds the database down
        # (503), not as an error escaping an after_request hook (500).
        session.rollback()
        return handle_unexpected(error)
    return response


def init_app(app: Flask) -> None:
    app.before_request(_open)
    app.after_request(_close)
