"""The browser tests' live server, headless Chromium and sign-in (Debian's chromium, driven
by Playwright; never a downloaded browser).

Locally these tests skip with a message when Chromium is not installed; with CI=true its
absence fails the run. Each page's screenshot is written to screenshots/ (not committed).
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from flask import Flask
from werkzeug.serving import make_server

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "screenshots"
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _require_chromium() -> None:
    if Path(CHROMIUM).exists():
        return
    message = "Chromium is not installed (apt-get install chromium): browser tests skipped"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def _buffered(app: WSGIApplication) -> WSGIApplication:
    """Answer from memory, the app's response closed before a byte goes out.

    A browser that navigates away mid-answer resets the connection; werkzeug's server then
    never closes the response, and the static file it was streaming is left for the garbage
    collector, which warns about it in whichever later test it happens to run.
    """

    def wsgi(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        answer = app(environ, start_response)
        try:
            return [b"".join(answer)]
        finally:
            close = getattr(answer, "close", None)
            if close is not None:
                close()

    return wsgi


@pytest.fixture
def live_app(app: Flask, dialect: str) -> Iterator[tuple[Flask, str]]:
    if dialect != "sqlite":
        pytest.skip("the console is exercised once, on SQLite; its services run on both")
    _require_chromium()
    server = make_server("127.0.0.1", 0, _buffered(app.wsgi_app), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        # localhost, not 127.0.0.1: the session cookie is Secure, which browsers honour on
        # http only for localhost.
        yield app, f"http://localhost:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def browser_page() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.set_default_timeout(10000)
        yield page
        context.close()
        browser.close()


def sign_in(page: Any, base: str, key: str) -> None:
    page.goto(f"{base}/admin/login")
    page.fill("#api_key", key)
    page.click("button[type=submit]")


def shot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
