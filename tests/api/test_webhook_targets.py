"""Where webhooks may go: in production only https to public addresses, checked on the
addresses a name resolves to at delivery, connecting to the address checked, following no
redirect, and logging a failure without telling what listens where."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from loyalty.extensions import db
from loyalty.webhooks import services as webhooks
from loyalty.webhooks import targets
from tests.helpers import created, free_port, problem

REFUSED_TARGETS = [
    "https://169.254.169.254/latest/meta-data/",  # the clouds' metadata service
    "https://10.0.0.1/hooks",
    "https://172.16.0.1/hooks",
    "https://192.168.1.1/hooks",
    "https://127.0.0.1:8443/hooks",
    "https://localhost/hooks",
    "https://[::1]/hooks",
    "https://[fd00:ec2::254]/hooks",  # a metadata service over IPv6 (unique local)
    "https://[::ffff:10.0.0.1]/hooks",  # a private IPv4 address written as IPv6
    "https://100.100.100.200/hooks",  # shared (carrier NAT) space, another metadata address
    "https://224.0.0.1/hooks",  # multicast
    "https://0.0.0.0/hooks",
    "http://127.0.0.1:8080/hooks",
    "http://shop.example/hooks",
]


@pytest.fixture
def production(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    """The app as deployed: no local webhook targets."""
    monkeypatch.setitem(app.config, "WEBHOOKS_ALLOW_LOCAL", False)


class Server:
    """A plain HTTP server on 127.0.0.1 answering every POST with `status` (and a Location
    when it redirects); records the paths it was sent."""

    def __init__(self, status: int = 200, location: str | None = None) -> None:
        self.paths: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                server.paths.append(self.path)
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.http.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.http.server_port)

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        server.close()


def register(client: FlaskClient, admin: dict[str, str], url: str) -> dict[str, Any]:
    body = {"url": url, "event_types": ["member.enrolled"]}
    return created(client.post("/v1/admin/webhooks", json=body, headers=admin))


def attempts_after_one_event(
    app: Flask, client: FlaskClient, admin: dict[str, str], checkout: dict[str, str], hook: str
) -> list[dict[str, Any]]:
    """Enrol a member (a member.enrolled event), run one worker pass, return the attempts."""
    created(client.post("/v1/members", json={"external_id": "c1"}, headers=checkout))
    with app.app_context():
        webhooks.dispatch(db.session)
        webhooks.deliver_due(db.session, allow_local=app.config["WEBHOOKS_ALLOW_LOCAL"])
    response = client.get(f"/v1/admin/webhooks/{hook}/deliveries", headers=admin)
    [delivery] = response.json["items"]
    attempts: list[dict[str, Any]] = delivery["attempts"]
    return attempts


def resolving_to(monkeypatch: pytest.MonkeyPatch, *answers: str) -> list[str]:
    """Make every name resolve to the next of `answers` (the last one repeats); returns the
    names looked up."""
    asked: list[str] = []

    def getaddrinfo(host: str, port: int, *args: Any, **kwargs: Any) -> list[Any]:
        asked.append(host)
        address = answers[min(len(asked), len(answers)) - 1]
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(targets.socket, "getaddrinfo", getaddrinfo)
    return asked


@pytest.mark.usefixtures("production")
@pytest.mark.parametrize("url", REFUSED_TARGETS)
def test_in_production_a_target_that_is_not_https_to_a_public_address_is_422(client, admin, url):
    response = client.post(
        "/v1/admin/webhooks", json={"url": url, "event_types": ["*"]}, headers=admin
    )

    assert "url" in problem(response, 422, "validation_error")["errors"]


@pytest.mark.usefixtures("production")
@pytest.mark.parametrize("url", ["https://shop.example/hooks", "https://93.184.216.34/hooks"])
def test_in_production_https_to_a_public_name_or_address_is_accepted(client, admin, url):
    assert register(client, admin, url)["url"] == url


@pytest.mark.usefixtures("production")
def test_a_public_name_that_resolves_to_a_private_address_is_refused_at_delivery(
    app, client, admin, checkout, monkeypatch, servers
):
    servers.append(receiver := Server())
    hook = register(client, admin, f"https://shop.example:{receiver.port}/hooks")["id"]
    resolving_to(monkeypatch, "127.0.0.1")

    [attempt] = attempts_after_one_event(app, client, admin, checkout, hook)

    assert attempt["status_code"] is None
    assert attempt["error"] == targets.REFUSED
    assert receiver.paths == []


def test_the_connection_goes_to_the_address_that_was_checked(
    app, client, admin, checkout, monkeypatch, servers
):
    """DNS rebinding: a name that answers a local address once and another one after must
    be sent to where the first answer pointed, looked up once."""
    servers.append(receiver := Server())
    hook = register(client, admin, f"http://localhost:{receiver.port}/hooks")["id"]
    asked = resolving_to(monkeypatch, "127.0.0.1", "10.255.255.1")

    [attempt] = attempts_after_one_event(app, client, admin, checkout, hook)

    assert attempt["status_code"] == 200
    assert receiver.paths == ["/hooks"]
    assert asked == ["localhost"]


def test_a_redirect_is_not_followed(app, client, admin, checkout, servers):
    servers.append(inside := Server())
    servers.append(redirecting := Server(302, f"http://127.0.0.1:{inside.port}/internal"))
    hook = register(client, admin, f"http://127.0.0.1:{redirecting.port}/hooks")["id"]

    [attempt] = attempts_after_one_event(app, client, admin, checkout, hook)

    assert attempt["status_code"] == 302
    assert redirecting.paths == ["/hooks"]
    assert inside.paths == []


@pytest.mark.parametrize("listening", ["nothing", "plain http"])
def test_a_failed_attempt_does_not_say_what_listens_there(
    app, client, admin, checkout, servers, listening
):
    """A port scan through the delivery log learns nothing: a closed port and an https
    request to a plain-http server fail alike."""
    if listening == "nothing":
        port = free_port()
    else:
        servers.append(plain := Server())
        port = plain.port
    hook = register(client, admin, f"https://localhost:{port}/hooks")["id"]

    [attempt] = attempts_after_one_event(app, client, admin, checkout, hook)

    assert attempt["status_code"] is None
    assert attempt["error"] == targets.UNREACHABLE
