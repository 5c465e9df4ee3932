"""The local Blueprint: our argument parser and nothing else that differs from flask-smorest.

PostgreSQL text cannot hold a NUL character, nor can any database store a lone UTF-16
surrogate (JSON can carry one, as an escape such as \\ud800): the parser refuses both in
bodies and query strings, and path segments with a NUL route nowhere (404). A number too long
for Python to read (over 4,300 digits) is malformed JSON, not a crash; so are NaN, Infinity
and numbers past a double's range (1e400), which Python's json reads but JSON (RFC 8259) has
not, and no database's JSON column can store. A path or query string that is not UTF-8 once
percent-decoded (%ED%A0%80, a lone surrogate; %FF) is a 400 before anything reads it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any, NoReturn
from urllib.parse import unquote_to_bytes

import flask
import marshmallow as ma
from flask_smorest import Blueprint as BaseBlueprint
from webargs import core
from webargs.flaskparser import FlaskParser, is_json_request
from werkzeug.routing import Map, UnicodeConverter, ValidationError

from loyalty.api.errors import MalformedJson
from loyalty.errors import LoyaltyError, ValidationFailed


class UnsupportedMediaType(LoyaltyError):
    status = 415
    code = "unsupported_media_type"
    title = "Unsupported media type"


class MalformedUrl(LoyaltyError):
    status = 400
    code = "malformed_url"
    title = "Malformed URL"


def refuse_undecodable_url() -> None:
    """Refuse a path or query string that is not UTF-8 once percent-decoded.

    Werkzeug would read each bad byte as U+FFFD, so the request would quietly name another
    member, order or filter than the one its client meant (and a lone surrogate, which no
    database stores, arrives this way: %ED%A0%80). Raises MalformedUrl.
    """
    environ = flask.request.environ
    # WSGI strings carry the request's bytes as Latin-1 text (PEP 3333). PATH_INFO is the
    # decoded path; servers that give the raw target too (gunicorn, werkzeug's) may have
    # replaced bad bytes in PATH_INFO already, so that is read as well.
    encoded = (
        environ.get("RAW_URI") or environ.get("REQUEST_URI") or "",
        environ.get("QUERY_STRING", ""),
    )
    try:
        environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8")
        for text in encoded:
            unquote_to_bytes(text.encode("latin-1")).decode("utf-8")
    except UnicodeError:
        raise MalformedUrl("The path or query string is not UTF-8 once percent-decoded.") from None


NUL_MESSAGE = "Strings must not contain NUL (\\u0000)."
SURROGATE_MESSAGE = "Strings must not contain a lone UTF-16 surrogate (\\ud800-\\udfff)."
# A surrogate arrives only as an escape: \uD800 to \uDFFF (a pair makes one character).
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abAB]|\\u[dD][c-fC-F]")


class Parser(FlaskParser):
    # A misspelt query parameter (?limt=5) is an error, as an unknown body field is.
    DEFAULT_UNKNOWN_BY_LOCATION = {
        **FlaskParser.DEFAULT_UNKNOWN_BY_LOCATION,
        "query": ma.RAISE,
        "querystring": ma.RAISE,
    }

    def _raw_load_json(self, req: flask.Request) -> Any:
        if not is_json_request(req):
            if req.get_data(cache=True):
                raise UnsupportedMediaType(
                    "Send the body as JSON (Content-Type: application/json)."
                )
            return core.missing
        raw = req.get_data(cache=True)
        try:
            data = json.loads(
                raw.decode(),
                parse_float=_finite_float,
                parse_constant=_refuse_constant,
            )
        except UnicodeDecodeError as error:
            raise MalformedJson(f"The body is not UTF-8: {error.reason}.") from None
        except NotJsonNumber as error:
            raise MalformedJson(
                f"The body holds {error}, a number JSON cannot carry (not finite)."
            ) from None
        except RecursionError:
            raise MalformedJson("The body is nested too deeply.") from None
        except json.JSONDecodeError:
            raise
        except ValueError:
            # int() refuses more than 4,300 digits (CVE-2020-10735), as a plain ValueError.
            raise MalformedJson("The body holds a number too long to read.") from None
        # Strict JSON has no raw control characters: a NUL arrives only as the \u0000 escape,
        # so most bodies need no walk.
        if b"\\u0000" in raw and _contains(data, _has_nul):
            raise ValidationFailed({"_schema": [NUL_MESSAGE]})
        if SURROGATE_ESCAPE.search(raw) and _contains(data, _has_lone_surrogate):
            raise ValidationFailed({"_schema": [SURROGATE_MESSAGE]})
        return data

    def load_querystring(self, req: flask.Request, schema: ma.Schema) -> Any:
        arguments = list(req.args.items(multi=True))
        if _contains(arguments, _has_nul):
            raise ValidationFailed({"_schema": [NUL_MESSAGE]}, "The query string did not validate.")
        if _contains(arguments, _has_lone_surrogate):
            raise ValidationFailed(
                {"_schema": [SURROGATE_MESSAGE]}, "The query string did not validate."
            )
        return super().load_querystring(req, schema)

    def _handle_invalid_json_error(
        self,
        error: json.JSONDecodeError | UnicodeDecodeError,
        req: flask.Request,
        *args: Any,
        **kwargs: Any,
    ) -> NoReturn:
        raise MalformedJson(f"The body is not valid JSON: {error}.")


class NotJsonNumber(Exception):
    """NaN, Infinity or -Infinity, or a number that only a float's infinity could hold."""


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise NotJsonNumber(text if len(text) <= 40 else f"{text[:40]}...")
    return number


def _refuse_constant(name: str) -> NoReturn:
    raise NotJsonNumber(name)


def _has_nul(text: str) -> bool:
    return "\x00" in text


def _has_lone_surrogate(text: str) -> bool:
    return any("\ud800" <= char <= "\udfff" for char in text)


def _contains(data: Any, bad: Callable[[str], bool]) -> bool:
    """Whether any string in `data` (keys included) is `bad`."""
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, str) and bad(item):
            return True
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return False


class SegmentConverter(UnicodeConverter):
    """The default path converter, except that a segment with a NUL matches no route."""

    def to_python(self, value: str) -> str:
        if "\x00" in value:
            raise ValidationError()
        return value


class OrderIdConverter(SegmentConverter):
    """An order id in a path: any segment but `quote`. /v1/orders/quote is POST /orders/quote's
    path, so a GET there is the 405 the document says, not a lookup of an order "quote" (no
    order may be named so)."""

    def __init__(self, map: Map, *args: Any, **kwargs: Any) -> None:
        super().__init__(map, *args, **kwargs)
        self.regex = f"(?!quote$){self.regex}"


class Blueprint(BaseBlueprint):
    ARGUMENTS_PARSER = Parser()
