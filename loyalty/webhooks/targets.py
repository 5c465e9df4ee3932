"""Where webhooks may go, and the one way they are sent.

An admin key (or a stolen one) chooses the URL, so the sender must not become a way into the
network it runs in. In production a target must be https and resolve only to public
addresses: loopback, private, link-local (which holds the clouds' metadata services), shared
(carrier NAT), multicast, reserved and unspecified addresses are refused. The name is resolved
at delivery time and the connection goes to the very address that was checked, so a name
that answers differently a second later (DNS rebinding) gets nowhere. Redirects are not
followed: a 3xx is the receiver's answer, a failed attempt. A failure is recorded without
saying what is listening there: refused, timed out and TLS errors read alike.

``LOYALTY_WEBHOOKS_ALLOW_LOCAL=1`` (development and tests) allows plain http and local
addresses.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
from typing import Any
from urllib.parse import urlsplit

from loyalty.errors import ValidationFailed

TIMEOUT_SECONDS = 10
LOCAL_NAMES = {"localhost"}
UNREACHABLE = "connection failed"
REFUSED = "refused: the target resolves to an address webhooks may not reach"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class TargetRefused(OSError):
    """The target resolves to an address webhooks may not reach."""


def is_public(address: IPAddress) -> bool:
    """Whether webhooks may reach `address` in production."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not (
        address.is_multicast or address.is_reserved or address.is_unspecified
    )


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _is_local(host: str) -> bool:
    literal = _literal(host)
    return host in LOCAL_NAMES or (literal is not None and literal.is_loopback)


def check_url(url: str, *, allow_local: bool) -> None:
    """Refuse a target URL at registration: https only (plain http to this machine when
    `allow_local`), and no address literal or local name webhooks may not reach. A name is
    checked again, on the addresses it resolves to, at every delivery. Raises
    ValidationFailed."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if not host or parts.scheme not in ("https", "http"):
        raise ValidationFailed({"url": ["Use an https:// URL."]})
    if allow_local:
        if parts.scheme == "http" and not _is_local(host):
            raise ValidationFailed({"url": ["Use an https:// URL (http:// only for localhost)."]})
        return
    literal = _literal(host)
    if parts.scheme != "https":
        raise ValidationFailed({"url": ["Use an https:// URL."]})
    if host in LOCAL_NAMES or (literal is not None and not is_public(literal)):
        raise ValidationFailed({"url": ["The URL must point to a public address."]})


Address = tuple[socket.AddressFamily, tuple[Any, ...]]


def resolve(host: str, port: int, *, allow_local: bool) -> Address:
    """The address to connect to for `host` (family, socket address): the first it resolves
    to, when every address it resolves to may be reached. Raises TargetRefused, OSError when
    it does not resolve."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    if not infos:
        raise OSError("no address")
    if not allow_local and not all(is_public(ipaddress.ip_address(i[4][0])) for i in infos):
        raise TargetRefused(REFUSED)
    family, _, _, _, sockaddr = infos[0]
    return family, tuple(sockaddr)


def _connect(address: Address, timeout: float | None) -> socket.socket:
    """A TCP connection to exactly `address`: no second name lookup on the way."""
    family, sockaddr = address
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(sockaddr)
    except BaseException:
        sock.close()
        raise
    return sock


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection to an address already checked, whatever the name resolves to now."""

    def __init__(self, host: str, port: int, address: Address, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = _connect(self.address, self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """The same over TLS: the certificate is verified for the name, not the address."""

    def __init__(self, host: str, port: int, address: Address, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self.address = address

    def connect(self) -> None:
        raw = _connect(self.address, self.timeout)
        self.sock = self._context.wrap_socket(raw, server_hostname=self.host)  # type: ignore[attr-defined]


def post(url: str, body: bytes, headers: dict[str, str], *, allow_local: bool) -> int:
    """POST `body` to `url` and return the answer's status (a redirect is not followed).
    Raises TargetRefused for an address webhooks may not reach, OSError when no answer came
    (ssl and timeout errors are OSErrors too)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    secure = parts.scheme == "https"
    port = parts.port or (443 if secure else 80)
    address = resolve(host, port, allow_local=allow_local)
    pinned = _PinnedHTTPSConnection if secure else _PinnedHTTPConnection
    connection = pinned(host, port, address, TIMEOUT_SECONDS)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request("POST", path, body=body, headers=headers)
        return int(connection.getresponse().status)
    except http.client.HTTPException as error:
        raise OSError(str(error)) from error
    finally:
        connection.close()


def failure(error: OSError) -> str:
    """What the delivery log says of a failed attempt: whether we refused the target, never
    what was (or was not) listening there."""
    return REFUSED if isinstance(error, TargetRefused) else UNREACHABLE
