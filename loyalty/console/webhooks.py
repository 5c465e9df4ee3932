"""Console pages for webhooks: the endpoints, registering one (its signing secret shown on
the answer only, never again), an endpoint's deliveries with redelivery, and deleting it.
Every write goes through the API's schema and services under the signed-in key's name, so
it is audited as through the API."""

from __future__ import annotations

import uuid

from flask import current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext
from werkzeug.wrappers import Response

from loyalty.console import blp, security
from loyalty.console.catalog_forms import WebhookForm, submit
from loyalty.errors import LoyaltyError
from loyalty.extensions import db
from loyalty.schemas.webhooks import WebhookInSchema
from loyalty.webhooks import endpoints as webhooks


@blp.get("/webhooks")
def webhook_list() -> str:
    return render_template("console/webhooks.html", endpoints=webhooks.list_endpoints(db.session()))


@blp.route("/webhooks/new", methods=["GET", "POST"])
def webhook_new() -> str | tuple[str, int]:
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        form = WebhookForm()
        created, errors = submit(
            form,
            lambda body: webhooks.create_endpoint(
                db.session(),
                WebhookInSchema().load(body),
                security.actor(),
                allow_local=current_app.config["WEBHOOKS_ALLOW_LOCAL"],
            ),
        )
        if created is not None:
            # The answer itself shows the secret: a flash would keep it in the cookie, and
            # the page is never cached (no-store), so it is seen this once.
            return render_template("console/webhook_created.html", created=created), 201
    else:
        form = WebhookForm(formdata=None)
    return render_template("console/webhook_form.html", form=form, errors=errors), (
        422 if errors else 200
    )


@blp.get("/webhooks/<uuid:webhook_id>")
def webhook_page(webhook_id: uuid.UUID) -> str:
    log = webhooks.delivery_log(db.session(), webhook_id, 100, None)
    return render_template("console/webhook.html", endpoint=log.endpoint, deliveries=log.deliveries)


@blp.post("/webhooks/<uuid:webhook_id>/deliveries/<uuid:delivery_id>/redeliver")
def redeliver(webhook_id: uuid.UUID, delivery_id: uuid.UUID) -> Response:
    webhooks.redeliver(db.session(), webhook_id, delivery_id, security.actor())
    flash(gettext("Queued to be sent again by the worker."), "ok")
    return redirect(url_for("console.webhook_page", webhook_id=webhook_id))


@blp.post("/webhooks/<uuid:webhook_id>/delete")
def webhook_delete(webhook_id: uuid.UUID) -> Response:
    try:
        webhooks.delete_endpoint(db.session(), webhook_id, security.actor())
    except LoyaltyError as error:  # deleted already
        flash(gettext("Not deleted:") + f" {error.detail}", "error")
    else:
        flash(gettext("Deleted: nothing more is sent to it; its delivery log is kept."), "ok")
    return redirect(url_for("console.webhook_list"))
