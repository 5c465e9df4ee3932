"""gunicorn's own refusals as problem+json, like every other error of the service.

gunicorn answers a request line or headers over its limits (414, 431) and a malformed request
(400) itself, before any application code runs, as an HTML page written by
``gunicorn.util.write_error``. It has no setting for their format, so gunicorn.conf.py swaps
that one function for ``write_problem``; the status and reason gunicorn chose are kept.
"""

from __future__ import annotations

import json
import socket

from gunicorn import util

# The same codes the application uses for these statuses (loyalty.api.errors.HTTP_CODES).
CODES = {
    400: "bad_request",
    403: "forbidden",
    414: "uri_too_long",
    417: "expectation_failed",
    431: "request_header_fields_too_large",
    500: "internal_error",
    501: "not_implemented",
}
DETAILS = {
    414: "The request line is longer than this server accepts.",
    431: "The request has more headers, or a longer header, than this server accepts.",
    500: "The server failed to handle the request.",
}


def problem_bytes(status: int, reason: str) -> bytes:
    """A whole HTTP/1.1 answer carrying a problem+json body; the connection is closed after
    it. The detail never repeats what the client sent."""
    code = CODES.get(status, "bad_request")
    body = json.dumps(
        {
            "type": f"urn:problem:loyalty:{code}",
            "title": reason,
            "status": status,
            "detail": DETAILS.get(status, "The server could not parse the request."),
            "code": code,
        }
    ).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/problem+json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


def write_problem(sock: socket.socket, status_int: int, reason: str, mesg: str) -> None:
    """Drop-in for ``gunicorn.util.write_error``; `mesg` (which may quote the request) is left
    to gunicorn's log."""
    util.write_nonblock(sock, problem_bytes(status_int, reason))


def answer_refusals_with_problems() -> None:
    util.write_error = write_problem
