"""`loyalty serve`: the API under gunicorn."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click


def gunicorn_args(host: str | None, port: int | None, workers: int | None) -> list[str]:
    """gunicorn's command line for `loyalty serve`. Without --host and --port the bind comes
    from gunicorn.conf.py, that is from LOYALTY_BIND (default 127.0.0.1:8000)."""
    conf = Path(__file__).resolve().parents[2] / "gunicorn.conf.py"
    args = [sys.executable, "-m", "gunicorn"]
    if conf.exists():
        args += ["--config", str(conf)]
    if host is not None or port is not None:
        default_host, _, default_port = os.environ.get("LOYALTY_BIND", "127.0.0.1:8000").rpartition(
            ":"
        )
        args += ["--bind", f"{host or default_host}:{port or default_port}"]
    if workers:
        args += ["--workers", str(workers)]
    return [*args, "loyalty:create_app()"]


@click.command("serve")
@click.option("--host", default=None, help="Default: from LOYALTY_BIND, else 127.0.0.1.")
@click.option("--port", default=None, type=int, help="Default: from LOYALTY_BIND, else 8000.")
@click.option("--workers", default=None, type=int, help="Default: from gunicorn.conf.py.")
def serve_command(host: str | None, port: int | None, workers: int | None) -> None:
    """Serve the API with gunicorn (sync workers)."""
    args = gunicorn_args(host, port, workers)
    os.execv(sys.executable, args)  # noqa: S606 - replaces this process with gunicorn
