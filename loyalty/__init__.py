"""loyalty: membership and loyalty points for e-commerce shops.

Environment variables:

- ``DATABASE_URL``: SQLAlchemy URL of the database. Default: an SQLite file at
  ``./instance/loyalty.db``. ``postgresql://...`` URLs use psycopg 3.
- ``LOYALTY_DB_POOL_SIZE`` / ``LOYALTY_DB_MAX_OVERFLOW``: PostgreSQL connection pool per
  process (default 5 / 5).
- ``LOYALTY_REPLICA_DATABASE_URL``: a PostgreSQL streaming replica for the reads that may
  lag (reports, insight, member lists, the audit log; loyalty.api.replica). Default: none,
  every read on the primary. Refused beside an SQLite primary.
  ``LOYALTY_REPLICA_POOL_SIZE`` / ``LOYALTY_REPLICA_MAX_OVERFLOW``: its pool per process
  (default 5 / 5). ``LOYALTY_REPLICA_MAX_LAG_SECONDS``: a replica further behind is not read
  from (default 5).
- ``LOYALTY_SECRET_KEY``: signs the admin console's session cookie and keys the pseudonyms
  of erased members (default: a key made once in ./instance/secret_key).
  ``LOYALTY_INSECURE_COOKIES=1`` drops the cookie's Secure flag, for a console reached over
  plain http on another host than localhost.
- ``LOYALTY_CONSOLE_IDLE_MINUTES`` / ``LOYALTY_CONSOLE_MAX_HOURS``: a console session ends
  after this many minutes without a request (default 30), and this many hours after signing
  in whatever the activity (default 8). Sessions are kept on the server: signing out, a
  timeout or revoking the key ends them for every copy of the cookie.
- ``LOYALTY_LOG_LEVEL``: log level (default INFO). Logs are JSON lines on stderr.
- ``LOYALTY_WEBHOOKS_ALLOW_LOCAL=1``: lets webhooks go to plain http and to local and private
  addresses (development and tests; by default a webhook must be https to a public address).
- ``LOYALTY_WEBHOOK_LEASE_SECONDS``: how long a jobs worker's claim on a batch of webhook
  deliveries lasts (default 60, over 10): a worker killed mid-batch leaves the rest to the
  others once it runs out.
- ``LOYALTY_DB_PGBOUNCER=1``: DATABASE_URL (and the replica's) is a PgBouncer in transaction
  pooling mode: no server-side prepared statements, the time zone set after connecting.
- ``LOYALTY_PROXIES``: how many reverse proxies stand in front (default 0; 1 behind the nginx
  of deploy/). The client's address and scheme are then read from the X-Forwarded-For and
  X-Forwarded-Proto headers those proxies set, and from no one else's.
- ``LOYALTY_RATE_LIMIT_STORAGE``: where rate limits are counted: ``memory://`` (default; each
  worker process counts its own, for the demo) or ``redis://127.0.0.1:6379/0`` (production:
  one count per key for every worker and machine). If Redis fails, requests are still
  served, counted in each worker's memory until Redis answers again.
- ``LOYALTY_RATE_LIMIT_CHECKOUT`` / ``_APP`` / ``_ADMIN``: requests per API key over all
  endpoints, by the key's scope (the largest of a key's scopes applies): one limit such as
  ``6000/minute`` (the checkout default), ``3000/minute`` (app), ``1200/minute`` (admin).
- ``LOYALTY_RATE_LIMIT_UNAUTHENTICATED``: requests without a valid key (401s) per client
  address before they are answered 429 (default ``60/minute``).
- ``LOYALTY_RATE_LIMIT_MEMBER``: requests per member token, each token its own budget apart
  from its key's (default ``120/minute``).
- ``LOYALTY_MEMBER_TOKEN_TTL_SECONDS``: how long a member token lives unless its minting asks
  otherwise (default 900; 60 to 3600, or the app does not start).
- ``LOYALTY_CORS_ORIGINS``: the customer app's origins, comma-separated (such as
  ``https://app.example.com``), whose pages may call the member-facing routes from a browser
  (default: none; a wildcard or anything but an origin stops the start).
- ``PROMETHEUS_MULTIPROC_DIR``: where gunicorn workers keep their metrics so /metrics adds
  them up (gunicorn.conf.py sets one up).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from loyalty import config
from loyalty.db import configure_engine
from loyalty.extensions import babel, csrf, db
from loyalty.logs import configure_logging


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__, instance_relative_config=False)
    app.config.from_mapping(config.from_environment())
    if test_config:
        app.config.update(test_config)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    if app.config["PROXIES"]:
        proxies = app.config["PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies)  # type: ignore[method-assign]
    configure_logging(os.environ.get("LOYALTY_LOG_LEVEL", "INFO"))
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)

    db.init_app(app)
    csrf.init_app(app)
    with app.app_context():
        configure_engine(db.engine)

    from loyalty import api
    from loyalty.api import health, observability, replica

    # Experiments have no API yet (issue 15 adds it later), so nothing else imports their
    # models: imported here so the metadata, and so the migrations' check, knows their tables.
    from loyalty.experiments import models as _experiment_models  # noqa: F401

    observability.init_app(app)
    replica.init_app(app)
    app.register_blueprint(health.blp)
    api.init_app(app)

    from loyalty.console import blp as console
    from loyalty.console import language

    babel.init_app(
        app,
        default_locale=language.DEFAULT,
        default_translation_directories="console/translations",
        locale_selector=language.select,
    )
    app.register_blueprint(console)

    from loyalty.cli import register_commands

    register_commands(app)
    return app
