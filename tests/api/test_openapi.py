"""The OpenAPI document: committed, generated from the code, valid, and served with its docs."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from typing import Any

import pytest
from flask import Flask
from openapi_spec_validator import validate

from loyalty.cli.openapi import OPENAPI_FILE, openapi_document

OPERATION_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


@pytest.fixture
def spec(app: Flask) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(openapi_document(app))
    return document


def v1_operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    operations = [
        (method, path, operation)
        for path, item in spec["paths"].items()
        if path.startswith("/v1/")
        for method, operation in item.items()
        if method in OPERATION_METHODS
    ]
    assert operations
    return operations


def resolve(spec: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = spec
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def test_the_committed_document_is_the_one_the_code_generates(app):
    committed = OPENAPI_FILE.read_text()

    assert committed == openapi_document(app), (
        "openapi/openapi.json is out of date: run `loyalty openapi export` and commit it"
    )


def test_the_document_is_valid_openapi(spec):
    validate(spec)


def test_every_route_is_documented_and_every_documented_operation_exists(app, spec):
    routed = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/v1/"):
            path = re.sub(r"<(?:[^<>:]+:)?([^<>]+)>", r"{\1}", rule.rule)
            routed |= {
                (m.lower(), path) for m in rule.methods or () if m not in ("HEAD", "OPTIONS")
            }

    documented = {(method, path) for method, path, _ in v1_operations(spec)}

    assert documented == routed


def test_every_operation_documents_401_and_403(spec):
    for method, path, operation in v1_operations(spec):
        assert {"401", "403"} <= set(operation["responses"]), f"{method} {path}"


def test_every_operation_documents_the_rate_limits_429_with_retry_after(spec):
    for method, path, operation in v1_operations(spec):
        response = resolve(spec, operation["responses"]["429"])
        assert "Retry-After" in response["headers"], f"{method} {path}"
        assert "application/problem+json" in response["content"], f"{method} {path}"


def test_every_operation_needs_the_bearer_key(spec):
    """An API key, or on the operations whose scopes name `member`, a member token."""
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    for method, path, operation in v1_operations(spec):
        member = [{"memberToken": []}] if "member" in operation["x-scopes"] else []
        assert operation["security"] == [{"bearerAuth": []}, *member], f"{method} {path}"


def test_every_operation_names_its_scopes(spec):
    for method, path, operation in v1_operations(spec):
        assert "admin" in operation["x-scopes"], f"{method} {path}"
        assert set(operation["x-scopes"]) <= {"checkout", "app", "admin", "member"}


def test_every_post_documents_the_idempotency_key_header(spec):
    posts = [(path, op) for method, path, op in v1_operations(spec) if method == "post"]

    assert posts
    for path, operation in posts:
        parameters = [resolve(spec, p) for p in operation.get("parameters", [])]
        headers = [p for p in parameters if p["in"] == "header"]
        assert [p["name"] for p in headers] == ["Idempotency-Key"], path
        assert headers[0]["required"] is False


def test_errors_are_documented_as_problem_json(spec):
    for method, path, operation in v1_operations(spec):
        for status, response in operation["responses"].items():
            if status.startswith(("4", "5")) or status == "default":
                content = resolve(spec, response)["content"]
                assert list(content) == ["application/problem+json"], f"{method} {path} {status}"


def test_the_app_serves_the_same_document(app, client):
    response = client.get("/openapi.json")

    assert response.status_code == 200
    assert response.json == json.loads(openapi_document(app))


class AssetLinks(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = {"script": "src", "link": "href", "img": "src"}.get(tag)
        self.urls += [value for name, value in attrs if name == wanted and value]


def test_the_docs_page_uses_only_assets_the_app_serves(client):
    response = client.get("/docs")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    page = AssetLinks()
    page.feed(response.get_data(as_text=True))

    assert page.urls
    for url in page.urls:
        assert not re.match(r"^(https?:)?//", url), f"/docs loads {url} from elsewhere"
        with client.get(url) as asset:
            assert asset.status_code == 200, url
            assert asset.get_data(), url


def test_the_docs_page_loads_the_served_document(client):
    page = client.get("/docs").get_data(as_text=True)

    assert '"/openapi.json"' in page
