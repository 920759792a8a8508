"""The WebSocket opening handshake, decided without I/O (RFC 6455 section 4.2, RFC 9110).

``decide(request, config, full=...)`` takes a parsed request head and answers either
``Accept`` (the 101 response bytes, the selected subprotocol, the extension offers and
what was negotiated) or ``Reject`` (a complete HTTP response to send before closing).
The adapter (``transports/websocket/handshake.py``) reads the head, bounds its size and
time, and sends what it is told.

Every refusal, in the order checked:

====  ===================================================================================
431   more than ``MAX_HEADERS`` header fields, or a head over ``MAX_HEAD_BYTES``
400   a head that is not HTTP/1.x syntax (the adapter's parser says so)
505   an HTTP version other than 1.0 and 1.1
400   HTTP/1.1 without exactly one ``Host`` (RFC 9112 section 3.2)
404   a path other than ``/`` (a query string is allowed) or a static file's
      (``/rocketws.js``, answered by ``core.assets``)
405   a method other than GET (HEAD too, for a plain request), with ``Allow: GET``
426   no WebSocket upgrade: a plain request, or HTTP/1.0, where ``Upgrade`` is ignored
      (RFC 9110 section 7.8); ``Upgrade: websocket``
400   ``Connection`` without the ``upgrade`` option; a request body
426   ``Sec-WebSocket-Version`` missing or not 13, with ``Sec-WebSocket-Version: 13``
      (RFC 6455 section 4.4)
400   ``Sec-WebSocket-Key`` missing, repeated, not ASCII base64, or not 16 bytes decoded
400   a malformed ``Sec-WebSocket-Protocol`` or ``Sec-WebSocket-Extensions``
400   more than one ``Origin``
403   an ``Origin`` outside ``ALLOWED_ORIGINS``
503   ``MAX_CONNECTIONS`` open (``full``), with ``Retry-After: 5``
====  ===================================================================================
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from http import HTTPStatus
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from rocketws.core import deflate

if TYPE_CHECKING:
    from rocketws.config import Config

MAX_HEADERS = 100
MAX_HEAD_BYTES = 16 * 1024  # request line + headers (nginx's default is 4 x 8 KiB buffers)
RETRY_AFTER = 5  # seconds, on 503
WEBSOCKET_VERSION = "13"
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 section 5.6.2
_OWS = " \t"


@dataclass(frozen=True, slots=True)
class Request:
    """A parsed request head: method, target and version as sent, and the header fields
    in order (names lower-cased, values as latin-1 text)."""

    method: str
    target: str
    version: str  # "1.0", "1.1"
    headers: tuple[tuple[str, str], ...]

    def values(self, name: str) -> list[str]:
        """Every value of header ``name`` (lower case), stripped of OWS, in order."""
        return [value.strip(_OWS) for key, value in self.headers if key == name]

    def joined(self, name: str) -> str | None:
        """The values of a list-valued header joined with ``,`` (RFC 9110 section 5.3),
        or None when absent."""
        values = self.values(name)
        return ",".join(values) if values else None


@dataclass(frozen=True, slots=True)
class Extension:
    """One extension offer or agreement: its name and parameters (value None when the
    parameter has no value), RFC 6455 section 9.1."""

    name: str
    params: tuple[tuple[str, str | None], ...] = ()


@dataclass(frozen=True, slots=True)
class Accept:
    """Switch protocols: send ``response`` (the 101), then speak WebSocket."""

    response: bytes
    subprotocol: str | None = None
    offers: tuple[Extension, ...] = ()  # what the client offered
    extensions: tuple[Extension, ...] = ()  # what was negotiated (in effect after the 101)


@dataclass(frozen=True, slots=True)
class Reject:
    """Answer without upgrading: send ``encode()``, then close.  A refusal, or a static
    file (``core.assets``).  ``detail`` and ``level`` are for the log."""

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()
    detail: str = ""
    level: int = logging.INFO
    send_body: bool = True  # False for HEAD and 304: Content-Length, no body
    content_type: str | None = "text/plain; charset=utf-8"  # None: no Content-Type (304)

    def encode(self, date: str | None = None) -> bytes:
        """The whole response: status line, headers (``Content-Length`` of the body,
        ``Connection: close``), body."""
        lines = [f"HTTP/1.1 {self.status} {HTTPStatus(self.status).phrase}"]
        if date is not None:
            lines.append(f"Date: {date}")
        if self.content_type is not None:
            lines.append(f"Content-Type: {self.content_type}")
        lines.append(f"Content-Length: {len(self.body)}")
        lines += [f"{name}: {value}" for name, value in self.headers]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return head + self.body if self.send_body else head


Decision = Accept | Reject
Answer = Callable[[Request], Reject]
"""How a static file answers its request (``core.assets.respond`` bound to an asset)."""

# -- refusals ---------------------------------------------------------------------------

# A response with Upgrade also carries Connection: upgrade (RFC 9110 section 7.8); every
# refusal closes the connection.
_CLOSE = (("Connection", "close"),)
_UPGRADE = (("Upgrade", "websocket"), ("Connection", "Upgrade, close"))


def _reject(
    status: int, body: str, detail: str, *extra: tuple[str, str], level: int = logging.INFO
) -> Reject:
    headers = extra + (_CLOSE if not any(name == "Connection" for name, _ in extra) else ())
    return Reject(status, body.encode(), headers, detail, level)


def bad_request(detail: str) -> Reject:
    """400 for a malformed handshake; ``detail`` says what was wrong (sent and logged)."""
    return _reject(400, f"Bad WebSocket handshake: {detail}.\n", detail)


def head_too_large() -> Reject:
    """431 for a request head over MAX_HEAD_BYTES (decided by the adapter while reading)."""
    return _reject(
        431,
        f"Request head over {MAX_HEAD_BYTES} bytes.\n",
        f"request head over {MAX_HEAD_BYTES} bytes",
    )


_PLAIN = "This is a WebSocket endpoint: connect with a WebSocket client.\n"
_HTTP10 = (
    "WebSocket needs HTTP/1.1; this request came as HTTP/1.0, where Upgrade is ignored "
    "(behind nginx: set proxy_http_version 1.1).\n"
)


# -- header grammar ---------------------------------------------------------------------


def is_token(text: str) -> bool:
    """Whether ``text`` is an HTTP token (RFC 9110 section 5.6.2)."""
    return _TOKEN.fullmatch(text) is not None


def _tokens(value: str | None) -> list[str]:
    """A ``#token``-style list, lower-cased, empty elements dropped (RFC 9110 5.6.1)."""
    if value is None:
        return []
    return [item.strip(_OWS).lower() for item in value.split(",") if item.strip(_OWS)]


def parse_subprotocols(value: str | None) -> tuple[str, ...]:
    """``Sec-WebSocket-Protocol = 1#token`` (RFC 6455 section 4.3), in the client's order;
    () when absent.  Raises ValueError when malformed."""
    if value is None:
        return ()
    items = [item.strip(_OWS) for item in value.split(",")]
    items = [item for item in items if item]
    if not items:
        raise ValueError("empty Sec-WebSocket-Protocol")
    for item in items:
        if not _TOKEN.fullmatch(item):
            raise ValueError(f"Sec-WebSocket-Protocol element {item!r} is not a token")
    return tuple(items)


class _Scanner:
    """A cursor over one header value, for the extension grammar."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def skip_ows(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in _OWS:
            self.pos += 1

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def token(self, what: str) -> str:
        m = _TOKEN.match(self.text, self.pos)
        if m is None:
            raise ValueError(f"expected {what} at {self.text[self.pos :]!r}")
        self.pos = m.end()
        return m.group()

    def quoted(self) -> str:
        """A quoted-string (RFC 9110 section 5.6.4), unescaped; the opening quote is next."""
        self.pos += 1
        out: list[str] = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            self.pos += 1
            if char == '"':
                return "".join(out)
            if char == "\\":
                if self.pos >= len(self.text):
                    break
                char = self.text[self.pos]
                self.pos += 1
            out.append(char)
        raise ValueError("unterminated quoted-string")


def parse_extensions(value: str | None) -> tuple[Extension, ...]:
    """``Sec-WebSocket-Extensions`` offers (RFC 6455 section 9.1), in order; () when
    absent.  A quoted parameter value must be a token once unquoted (9.1; RFC 7692
    section 5 relies on it).  Raises ValueError when malformed."""
    if value is None:
        return ()
    scan = _Scanner(value)
    offers: list[Extension] = []
    while True:
        scan.skip_ows()
        if scan.peek() == ",":  # an empty list element (RFC 9110 section 5.6.1)
            scan.pos += 1
            continue
        if not scan.peek():
            break
        name = scan.token("an extension name")
        params: list[tuple[str, str | None]] = []
        scan.skip_ows()
        while scan.peek() == ";":
            scan.pos += 1
            scan.skip_ows()
            key = scan.token("a parameter name")
            scan.skip_ows()
            param: str | None = None
            if scan.peek() == "=":
                scan.pos += 1
                scan.skip_ows()
                if scan.peek() == '"':
                    param = scan.quoted()
                    if not _TOKEN.fullmatch(param):
                        raise ValueError(f"quoted value {param!r} of {key!r} is not a token")
                else:
                    param = scan.token(f"a value for {key!r}")
                scan.skip_ows()
            params.append((key, param))
        offers.append(Extension(name, tuple(params)))
        if scan.peek() not in (",", ""):
            raise ValueError(f"unexpected {scan.text[scan.pos :]!r} in Sec-WebSocket-Extensions")
    if not offers:
        raise ValueError("empty Sec-WebSocket-Extensions")
    return tuple(offers)


def accept_key(key: str) -> str:
    """``Sec-WebSocket-Accept`` for a client's key (RFC 6455 section 4.2.2, item 5.4)."""
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + _GUID).digest()).decode("ascii")


def _key_problem(keys: list[str]) -> str | None:
    """What is wrong with the ``Sec-WebSocket-Key`` values, or None (RFC 6455 4.2.1 item 5)."""
    if not keys:
        return "missing Sec-WebSocket-Key"
    if len(keys) > 1:
        return "more than one Sec-WebSocket-Key"
    key = keys[0]
    if not key.isascii():
        return "Sec-WebSocket-Key is not ASCII"
    try:
        raw = base64.b64decode(key, validate=True)
    except binascii.Error:
        return "Sec-WebSocket-Key is not base64"
    if len(raw) != 16:
        return f"Sec-WebSocket-Key decodes to {len(raw)} bytes, not 16"
    return None


# -- subprotocol and extensions ---------------------------------------------------------


def select_subprotocol(offered: Sequence[str], supported: Sequence[str]) -> str | None:
    """The first subprotocol the client offered that the server supports, or None (then
    no ``Sec-WebSocket-Protocol`` is sent: RFC 6455 section 4.2.2, item 5.5)."""
    for name in offered:
        for ours in supported:
            if name == ours:  # subprotocol names are compared case-sensitively
                return ours
    return None


def negotiate_extensions(
    offers: Sequence[Extension], config: Config
) -> tuple[str | None, tuple[Extension, ...]]:
    """Choose among the client's extension offers (RFC 6455 section 9.1).

    Returns the ``Sec-WebSocket-Extensions`` response value (None: send none) and the
    extensions in effect, with their agreed parameters.  permessage-deflate (RFC 7692,
    ``core.deflate``) is the only extension accepted, when ``COMPRESSION`` is on.
    """
    agreement = deflate.negotiate(offers, config.compression)
    if agreement is None:
        return None, ()
    return _AGREED[agreement]


# One (response, extensions) value per agreement, shared by every connection that has it.
_AGREED = {
    agreement: (agreement.response, (Extension(deflate.NAME, agreement.params),))
    for agreement in (deflate.AGREED, deflate.AGREED_WITH_BITS)
}


def origin_allowed(origin: str | None, allowed: Sequence[str]) -> bool:
    """Whether a page of ``origin`` may connect (no Origin: not a browser, allowed)."""
    if origin is None or "*" in allowed:
        return True
    return origin.rstrip("/").lower() in allowed


# -- the decision -----------------------------------------------------------------------


def _path(target: str) -> str:
    """The path of an origin-form or absolute-form target (RFC 9112 section 3.2)."""
    if target.startswith("/"):
        return target.split("?", 1)[0]
    if "://" in target:
        try:
            return urlsplit(target).path or "/"
        except ValueError:
            return ""
    return ""  # asterisk-form, authority-form


def _has_body(request: Request) -> bool:
    lengths = request.values("content-length")
    return bool(request.values("transfer-encoding")) or any(length != "0" for length in lengths)


def decide(
    request: Request,
    config: Config,
    *,
    full: bool = False,
    assets: Mapping[str, Answer] | None = None,
) -> Decision:
    """Accept or refuse an opening handshake (the checks in order: the module docstring).

    ``full``: ``MAX_CONNECTIONS`` WebSockets are open.  ``assets``: static files by path
    (``core.assets``), answered instead of the 404 for their path.
    """
    if len(request.headers) > MAX_HEADERS:
        return _reject(
            431,
            f"More than {MAX_HEADERS} header fields.\n",
            f"{len(request.headers)} header fields (limit {MAX_HEADERS})",
        )
    if request.version not in ("1.0", "1.1"):
        return _reject(505, "HTTP/1.1 only.\n", f"HTTP version {request.version}")
    if request.version == "1.1" and len(request.values("host")) != 1:
        return bad_request("an HTTP/1.1 request needs exactly one Host header")
    path = _path(request.target)
    if assets is not None and path in assets:
        return assets[path](request)
    if path != "/":
        return _reject(404, "Not found\n", f"path {request.target!r}", level=logging.DEBUG)
    # RFC 9110 section 7.8: a server must ignore Upgrade in an HTTP/1.0 request.
    wants_websocket = "websocket" in _tokens(request.joined("upgrade"))
    upgrade = wants_websocket and request.version == "1.1"
    if request.method != "GET" and (upgrade or request.method != "HEAD"):
        # RFC 6455 section 4.2.1 item 1: the handshake is a GET.
        return _reject(405, "Use GET.\n", f"method {request.method}", ("Allow", "GET"))
    if not upgrade:
        if wants_websocket:
            refusal = _reject(426, _HTTP10, "an HTTP/1.0 upgrade request (a proxy?)", *_UPGRADE)
        else:
            refusal = _reject(426, _PLAIN, "a plain HTTP request", *_UPGRADE, level=logging.DEBUG)
        if request.method == "HEAD":
            return replace(refusal, send_body=False)
        return refusal
    if "upgrade" not in _tokens(request.joined("connection")):
        return bad_request("Connection must include the upgrade option")
    if _has_body(request):
        return bad_request("an upgrade request has no body")
    version = request.joined("sec-websocket-version")
    if version != WEBSOCKET_VERSION:
        # RFC 6455 section 4.4: say which version we speak.
        return _reject(
            426,
            f"Only WebSocket version {WEBSOCKET_VERSION} is supported.\n",
            f"Sec-WebSocket-Version {version!r}",
            ("Sec-WebSocket-Version", WEBSOCKET_VERSION),
            *_UPGRADE,
        )
    keys = request.values("sec-websocket-key")
    problem = _key_problem(keys)
    if problem is not None:
        return bad_request(problem)
    try:
        offered = parse_subprotocols(request.joined("sec-websocket-protocol"))
        offers = parse_extensions(request.joined("sec-websocket-extensions"))
    except ValueError as exc:
        return bad_request(str(exc))
    origins = request.values("origin")
    if len(origins) > 1:
        return bad_request("more than one Origin")  # RFC 6454 section 7.3
    origin = origins[0] if origins else None
    if not origin_allowed(origin, config.allowed_origins):
        return _reject(
            403,
            "This origin may not open WebSockets here.\n",
            f"origin {origin!r} (ALLOWED_ORIGINS)",
        )
    if full:
        return _reject(
            503,
            "Too many connections on this server; retry later.\n",
            "MAX_CONNECTIONS open",
            ("Retry-After", str(RETRY_AFTER)),
            level=logging.WARNING,
        )
    subprotocol = select_subprotocol(offered, config.subprotocols)
    extensions_header, extensions = negotiate_extensions(offers, config)
    lines = [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {accept_key(keys[0])}",
    ]
    if subprotocol is not None:
        lines.append(f"Sec-WebSocket-Protocol: {subprotocol}")
    if extensions_header is not None:
        lines.append(f"Sec-WebSocket-Extensions: {extensions_header}")
    response = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return Accept(response, subprotocol, offers, extensions)
