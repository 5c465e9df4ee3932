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

from loyalty.errors import HTTP_CODES, problem_document

DETAILS = {
    414: "The request line is longer than this server accepts.",
    431: "The request has more headers, or a longer header, than this server accepts.",
    500: "The server failed to handle the request.",
}


def problem_bytes(status: int, reason: str) -> bytes:
    """A whole HTTP/1.1 answer carrying a problem+json body; the connection is closed after
    it. The detail never repeats what the client sent."""
    detail = DETAILS.get(status, "The server could not parse the request.")
    body = json.dumps(
        problem_document(status, HTTP_CODES.get(status, "bad_request"), reason, detail)
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
