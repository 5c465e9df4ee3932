"""Configuration from the environment (documented in loyalty/__init__.py and the README)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

DEFAULT_SQLITE = Path.cwd() / "instance" / "loyalty.db"


def database_url(raw: str | None) -> str:
    """Normalize DATABASE_URL: default to the SQLite file, and use psycopg 3 for PostgreSQL."""
    if not raw:
        DEFAULT_SQLITE.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{DEFAULT_SQLITE}"
    for prefix in ("postgres://", "postgresql://"):
        if raw.startswith(prefix):
            return "postgresql+psycopg://" + raw[len(prefix) :]
    return raw


def behind_pgbouncer() -> bool:
    """LOYALTY_DB_PGBOUNCER=1: the database URL is a PgBouncer in transaction pooling mode,
    where consecutive transactions of one connection may run on different server sessions."""
    return os.environ.get("LOYALTY_DB_PGBOUNCER") == "1"


def engine_options(url: str) -> dict[str, Any]:
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 30}}
    connect_args: dict[str, Any] = {"connect_timeout": 5}
    if behind_pgbouncer():
        # psycopg prepares a statement on the server after its 5th run; the next
        # transaction may be on another server session, where that name does not exist
        # (PgBouncer 1.18 does not track prepared statements). And PgBouncer refuses the
        # `options` startup parameter: loyalty.db sets the time zone after connecting
        # instead (see loyalty.db.in_utc).
        connect_args["prepare_threshold"] = None
    else:
        # Sessions in UTC, so date() of a timestamp is the UTC day on every server.
        connect_args["options"] = "-c timezone=UTC"
    return {
        "pool_size": int(os.environ.get("LOYALTY_DB_POOL_SIZE", "5")),
        "max_overflow": int(os.environ.get("LOYALTY_DB_MAX_OVERFLOW", "5")),
        # No ping on every checkout (a round trip per request): loyalty.db pings a
        # connection only after it sat idle (see ping_idle_connections).
        "pool_recycle": 1800,
        "connect_args": connect_args,
    }


# Short: a replica that does not answer must cost a request little before reads fall back.
# libpq's minimum.
REPLICA_CONNECT_TIMEOUT_SECONDS = 2


def replica_url(raw: str | None, primary: str) -> str | None:
    """LOYALTY_REPLICA_DATABASE_URL, normalized as DATABASE_URL is; None when unset (no
    replica: every read on the primary). Raises ValueError unless both it and the primary
    are PostgreSQL: SQLite has no replicas."""
    if not raw:
        return None
    url = database_url(raw)
    if not (url.startswith("postgresql") and primary.startswith("postgresql")):
        raise ValueError(
            "LOYALTY_REPLICA_DATABASE_URL needs PostgreSQL, for the replica and for the primary "
            "(DATABASE_URL): SQLite has no replicas. Unset it to read everything from the "
            "primary."
        )
    return url


def replica_engine_options(url: str) -> dict[str, Any]:
    """The primary's engine options, with the replica's own pool and a short connect timeout
    (SQLite, the test suite's stand-in, keeps the primary's)."""
    options = engine_options(url)
    if url.startswith("sqlite"):
        return options
    options["pool_size"] = int(os.environ.get("LOYALTY_REPLICA_POOL_SIZE", "5"))
    options["max_overflow"] = int(os.environ.get("LOYALTY_REPLICA_MAX_OVERFLOW", "5"))
    options["connect_args"] = {
        **options["connect_args"],
        "connect_timeout": REPLICA_CONNECT_TIMEOUT_SECONDS,
    }
    return options


def replica_max_lag() -> float:
    """LOYALTY_REPLICA_MAX_LAG_SECONDS: a replica further behind than this many seconds is
    not read from (default 5)."""
    raw = os.environ.get("LOYALTY_REPLICA_MAX_LAG_SECONDS") or "5"
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise ValueError(
            f"LOYALTY_REPLICA_MAX_LAG_SECONDS must be a number of seconds, 0 or more, not {raw!r}."
        )
    return value


def secret_key() -> str:
    """LOYALTY_SECRET_KEY, or one made once and kept in ./instance so every worker on this
    machine signs console sessions alike."""
    if os.environ.get("LOYALTY_SECRET_KEY"):
        return os.environ["LOYALTY_SECRET_KEY"]
    path = DEFAULT_SQLITE.parent / "secret_key"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with path.open("x") as created:
            created.write(secrets.token_urlsafe(48))
        path.chmod(0o600)
    except FileExistsError:
        pass
    return path.read_text().strip()


def _positive(name: str, default: int) -> int:
    """A whole number setting above zero, from the environment variable `name`."""
    raw = os.environ.get(name)
    if not raw:
        return default
    value = int(raw)
    if value < 1:
        raise ValueError(f"{name} must be a whole number above zero, not {raw!r}.")
    return value


# Requests per API key, by the key's scopes (the most generous of a key's scopes applies), and
# per client address for requests without a valid key. A backstop against a runaway client,
# not a quota: a checkout key may send 100 requests a second for a whole minute.
RATE_LIMIT_DEFAULTS = {
    "checkout": "6000/minute",
    "app": "3000/minute",
    "admin": "1200/minute",
    # per member token: one customer's app, a few requests a screen
    "member": "120/minute",
    "unauthenticated": "60/minute",
}


def member_token_ttl() -> int:
    """LOYALTY_MEMBER_TOKEN_TTL_SECONDS: how long a member token lives unless its minting
    asks for less or more, within the bounds of loyalty.auth.member_tokens (1 minute to 1
    hour; checked when the app starts)."""
    return _positive("LOYALTY_MEMBER_TOKEN_TTL_SECONDS", 900)


def cors_origins() -> list[str]:
    """LOYALTY_CORS_ORIGINS: the customer app's origins (comma-separated, such as
    ``https://app.example.com``) whose pages may call the member-facing routes from a
    browser; none by default."""
    raw = os.environ.get("LOYALTY_CORS_ORIGINS", "")
    return [origin.strip() for origin in raw.split(",") if origin.strip()]


def rate_limits() -> dict[str, str]:
    """LOYALTY_RATE_LIMIT_<SCOPE> for each scope and for unauthenticated requests."""
    return {
        name: os.environ.get(f"LOYALTY_RATE_LIMIT_{name.upper()}") or default
        for name, default in RATE_LIMIT_DEFAULTS.items()
    }


def webhook_lease_seconds() -> int:
    """LOYALTY_WEBHOOK_LEASE_SECONDS: how long a worker's claim on a batch of deliveries
    lasts; a worker that dies mid-batch leaves the rest to others after it (default 60)."""
    value = _positive("LOYALTY_WEBHOOK_LEASE_SECONDS", 60)
    if value <= 10:
        raise ValueError("LOYALTY_WEBHOOK_LEASE_SECONDS must be over 10 (a delivery's timeout).")
    return value


def from_environment() -> dict[str, Any]:
    url = database_url(os.environ.get("DATABASE_URL"))
    replica = replica_url(os.environ.get("LOYALTY_REPLICA_DATABASE_URL"), url)
    return {
        "SECRET_KEY": secret_key(),
        "SESSION_COOKIE_NAME": "loyalty_console",
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Strict",
        "SESSION_COOKIE_SECURE": os.environ.get("LOYALTY_INSECURE_COOKIES") != "1",
        "SESSION_COOKIE_PATH": "/admin",
        # The cookie holds a console session's token; the session itself lives on the server
        # (loyalty.auth.sessions) and ends on sign-out or after these timeouts.
        "CONSOLE_IDLE_MINUTES": _positive("LOYALTY_CONSOLE_IDLE_MINUTES", 30),
        "CONSOLE_MAX_HOURS": _positive("LOYALTY_CONSOLE_MAX_HOURS", 8),
        "PERMANENT_SESSION_LIFETIME": _positive("LOYALTY_CONSOLE_MAX_HOURS", 8) * 3600,
        # CSRF (Flask-WTF) guards the console only, which checks it itself: the JSON API
        # authenticates with a bearer header, never a cookie, so it has nothing to forge.
        "WTF_CSRF_CHECK_DEFAULT": False,
        # A form's token is good while its session is: the server-side session's timeouts
        # bound it, not a second clock that could expire a form mid-session.
        "WTF_CSRF_TIME_LIMIT": None,
        "SQLALCHEMY_DATABASE_URI": url,
        "SQLALCHEMY_ENGINE_OPTIONS": engine_options(url),
        # Reads that may lag (loyalty.api.replica); None: everything on the primary.
        "REPLICA_DATABASE_URI": replica,
        "REPLICA_ENGINE_OPTIONS": replica_engine_options(replica) if replica else {},
        "REPLICA_MAX_LAG_SECONDS": replica_max_lag(),
        "MAX_CONTENT_LENGTH": 1024 * 1024,
        # Reverse proxies in front (deploy/'s nginx is one): their X-Forwarded-For and
        # X-Forwarded-Proto are believed, anyone else's are not.
        "PROXIES": int(os.environ.get("LOYALTY_PROXIES", "0")),
        # Webhooks to plain http and local addresses: development and tests only.
        "WEBHOOKS_ALLOW_LOCAL": os.environ.get("LOYALTY_WEBHOOKS_ALLOW_LOCAL") == "1",
        # Longer than a delivery's 10 s timeout, so no other worker sends it meanwhile.
        "WEBHOOK_LEASE_SECONDS": webhook_lease_seconds(),
        "RATE_LIMITS": rate_limits(),
        "MEMBER_TOKEN_TTL_SECONDS": member_token_ttl(),
        "CORS_ORIGINS": cors_origins(),
        # memory:// counts in each worker process (the demo); production shares Redis.
        "RATE_LIMIT_STORAGE": os.environ.get("LOYALTY_RATE_LIMIT_STORAGE") or "memory://",
        "RATE_LIMIT_KEY_PREFIX": "loyalty",
        "API_TITLE": "loyalty",
        "API_VERSION": "v1",
        "OPENAPI_VERSION": "3.0.3",
        "OPENAPI_URL_PREFIX": "/",
        "OPENAPI_JSON_PATH": "openapi.json",
        "OPENAPI_SWAGGER_UI_PATH": "docs",
        "OPENAPI_SWAGGER_UI_URL": "/docs/assets/",
        "API_SPEC_OPTIONS": {
            "info": {
                "description": (
                    "Membership and loyalty points with a ledger-based points model. "
                    "Errors are application/problem+json with a stable `code`."
                ),
            },
            "servers": [{"url": "/"}],
        },
    }
