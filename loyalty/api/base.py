"""The local Blueprint: our argument parser and nothing else that differs from flask-smorest."""

from __future__ import annotations

import json
from typing import Any, NoReturn

import flask
from flask_smorest import Blueprint as BaseBlueprint
from webargs import core
from webargs.flaskparser import FlaskParser, is_json_request

from loyalty.api.errors import MalformedJson
from loyalty.errors import LoyaltyError


class UnsupportedMediaType(LoyaltyError):
    status = 415
    code = "unsupported_media_type"
    title = "Unsupported media type"


class Parser(FlaskParser):
    def _raw_load_json(self, req: flask.Request) -> Any:
        if not is_json_request(req):
            if req.get_data(cache=True):
                raise UnsupportedMediaType(
                    "Send the body as JSON (Content-Type: application/json)."
                )
            return core.missing
        return core.parse_json(req.get_data(cache=True))

    def _handle_invalid_json_error(
        self,
        error: json.JSONDecodeError | UnicodeDecodeError,
        req: flask.Request,
        *args: Any,
        **kwargs: Any,
    ) -> NoReturn:
        raise MalformedJson(f"The body is not valid JSON: {error}.")


class Blueprint(BaseBlueprint):
    ARGUMENTS_PARSER = Parser()
