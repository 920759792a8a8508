"""RPC, subscribe and publish proxies without I/O: routes, the request sent, the answer read.

A client's ``rpc {method, params}`` is routed by the first ``PROXY["RPC"]`` entry whose
``pattern`` (a glob: ``*``, ``?``, ``[...]``) matches the method, else ``PROXY["RPC_URL"]``
(the catch-all), else -32040.  A route names an application URL (the call is POSTed
there) or an in-process handler (``module:function``).  The subscribe and publish proxies
(namespace options ``subscribe_proxy``, ``publish_proxy``) POST to ``SUBSCRIBE_URL`` and
``PUBLISH_URL`` the same way, as JSON-RPC methods ``subscribe`` and ``publish``.

Every proxy speaks plain JSON-RPC 2.0 over HTTP: the body is one request object (any
JSON-RPC library can serve it); who is calling travels in headers (``X-RocketWS-Client``,
``X-RocketWS-User`` percent-encoded UTF-8, ``X-RocketWS-Meta`` JSON), next to the upgrade
request's headers named in ``PROXY["HEADERS"]``.  The answer must be a JSON-RPC response
to that request: its ``result`` is the outcome, its ``error`` is the application's and is
passed to the client (``application_error``).  The adapter is
``rocketws.transports.proxies``; docs/operations.md#proxies is the operator's view.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import translate
from typing import Any, Protocol
from urllib.parse import quote

from rocketws.core import jsonrpc
from rocketws.core.codes import RpcCode
from rocketws.core.exceptions import ApplicationError, InvalidParams, RpcError

__all__ = [
    "MAX_METHOD_LENGTH",
    "RESERVED_CODES",
    "Route",
    "Routes",
    "CallContext",
    "Proxies",
    "NO_PROXIES",
    "validate_method",
    "request_body",
    "context_headers",
    "read_answer",
    "application_error",
    "failure",
]

MAX_METHOD_LENGTH = 255  # characters in a proxied method name
RESERVED_CODES = range(-32768, -31999)  # JSON-RPC 2.0 section 5.1: the spec's and the server's
CONTEXT_HEADERS = ("x-rocketws-client", "x-rocketws-user", "x-rocketws-meta")
"""Headers RocketWS sets itself: never forwarded from the upgrade request."""
_USER_SAFE = "!#$&'()*+,/:;=?@[]~"  # printable ASCII kept as is in X-RocketWS-User


@dataclass(frozen=True, slots=True)
class Route:
    """One ``PROXY["RPC"]`` entry: methods matching ``pattern`` go to ``url`` (POST) or
    ``handler`` (an import path ``module:function``), exactly one of the two."""

    pattern: str
    url: str | None = None
    handler: str | None = None
    _match: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if (self.url is None) == (self.handler is None):
            raise ValueError(f"route {self.pattern!r}: give exactly one of url and handler")
        object.__setattr__(self, "_match", re.compile(translate(self.pattern)))

    def matches(self, method: str) -> bool:
        return self._match.match(method) is not None


class Routes:
    """The RPC routes in order, then the catch-all URL (None: none)."""

    __slots__ = ("routes", "catch_all", "_rest")

    def __init__(self, routes: Sequence[Route] = (), catch_all: str | None = None) -> None:
        self.routes = tuple(routes)
        self.catch_all = catch_all
        self._rest = None if catch_all is None else Route("*", url=catch_all)

    def __bool__(self) -> bool:
        return bool(self.routes) or self.catch_all is not None

    def route(self, method: str) -> Route:
        """The route of ``method``.  Raises RpcError -32040 when none matches."""
        for route in self.routes:
            if route.matches(method):
                return route
        if self._rest is not None:
            return self._rest
        raise failure(RpcCode.PROXY_METHOD_NOT_FOUND, "no PROXY route matches this method", method)

    def patterns(self) -> list[str]:
        """The method patterns clients may call with ``rpc``, in routing order (``*``
        last when ``RPC_URL`` catches the rest): for ``rpc.discover``."""
        found = [r.pattern for r in self.routes]
        if self.catch_all is not None:
            found.append("*")
        return found


@dataclass(frozen=True, slots=True)
class CallContext:
    """Who calls, as an in-process handler sees it (the second argument of
    ``handler(params, context)``) and as the HTTP headers carry it."""

    method: str
    client: str
    user: str  # "" = anonymous
    meta: Any = None  # the connection token's (or connect proxy's) `meta`
    headers: Mapping[str, str] = field(default_factory=dict)  # the forwarded upgrade headers


class Proxies(Protocol):
    """The process's proxies (``rocketws.transports.proxies.Proxies``)."""

    routes: Routes

    def call(self, context: CallContext, params: Any) -> Any:
        """Run ``rpc``: the application's result.  Raises RpcError (-32040..-32045, or
        the application's own error).  May block the calling greenlet, never others."""
        ...

    def subscribe(self, context: CallContext, channel: str) -> None:
        """Ask the subscribe proxy; returns when allowed.  Raises RpcError."""
        ...

    def publish(self, context: CallContext, channel: str, data: Any) -> Any:
        """Ask the publish proxy; the data to publish (the application may replace it).
        Raises RpcError."""
        ...


class _NoProxies:
    """No proxy configured: ``rpc`` answers -32040, and no namespace asks a proxy."""

    routes = Routes()

    def call(self, context: CallContext, params: Any) -> Any:
        raise failure(RpcCode.PROXY_METHOD_NOT_FOUND, "no RPC proxy is configured", context.method)

    def subscribe(self, context: CallContext, channel: str) -> None:
        raise failure(RpcCode.APPLICATION_UNAVAILABLE, "no subscribe proxy is configured", "subscribe")

    def publish(self, context: CallContext, channel: str, data: Any) -> Any:
        raise failure(RpcCode.APPLICATION_UNAVAILABLE, "no publish proxy is configured", "publish")


NO_PROXIES: Proxies = _NoProxies()


def failure(code: int, reason: str, method: str) -> RpcError:
    """A proxy failure RocketWS names (-32040..-32045): data ``{method, reason}``."""
    return RpcError({"method": method, "reason": reason}, code=code)


def validate_method(value: Any) -> str:
    """``value`` if it can name a proxied method: a string of 1 to MAX_METHOD_LENGTH
    printable characters.  Raises InvalidParams (-32602)."""
    if not isinstance(value, str) or not value:
        raise InvalidParams({"param": "method", "reason": "must be a non-empty string"})
    if len(value) > MAX_METHOD_LENGTH:
        raise InvalidParams({"param": "method", "reason": f"longer than {MAX_METHOD_LENGTH} characters"})
    if not value.isprintable():
        raise InvalidParams({"param": "method", "reason": "contains control characters"})
    return value


def request_body(request_id: int, method: str, params: Any) -> bytes:
    """The JSON-RPC request POSTed to the application (params left out when None)."""
    request: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": request_id}
    if params is not None:
        request["params"] = params
    return jsonrpc.dumps(request)


def context_headers(context: CallContext) -> list[tuple[str, str]]:
    """The headers saying who calls, then the forwarded upgrade headers."""
    headers = [("X-RocketWS-Client", context.client)]
    if context.user:
        headers.append(("X-RocketWS-User", quote(context.user, safe=_USER_SAFE)))
    if context.meta is not None:
        # ASCII JSON: header values are latin-1 on the wire (RFC 9110 5.5).
        headers.append(("X-RocketWS-Meta", _ascii_json(context.meta)))
    headers += context.headers.items()
    return headers


def _ascii_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=True)


def read_answer(body: bytes, request_id: int, method: str) -> Any:
    """The ``result`` of the application's JSON-RPC response to request ``request_id``.

    Raises the application's error (``application_error``), or RpcError -32043 when the
    body is not a JSON-RPC response to that request (never echoing the body).
    """
    try:
        answer = jsonrpc.loads(body)
    except jsonrpc.ParseError:
        raise failure(RpcCode.BAD_APPLICATION_ANSWER, "the answer is not JSON", method) from None
    if not isinstance(answer, dict) or ("result" in answer) == ("error" in answer):
        raise failure(
            RpcCode.BAD_APPLICATION_ANSWER,
            'the answer is not a JSON-RPC response (one of "result" or "error")',
            method,
        )
    if "id" in answer and answer["id"] != request_id:
        raise failure(RpcCode.BAD_APPLICATION_ANSWER, "the answer's id is not the request's", method)
    if "result" in answer:
        return answer["result"]
    error = answer["error"]
    if not isinstance(error, dict):
        raise failure(RpcCode.BAD_APPLICATION_ANSWER, "the answer's error is not an object", method)
    raise application_error(error.get("code"), error.get("message"), error.get("data"))


def application_error(code: Any, message: Any, data: Any = None) -> RpcError:
    """The client's error for an error the application answered.

    An integer ``code`` outside JSON-RPC's reserved range (-32768..-32000) is the
    application's to define: code, message and data reach the client as given (a
    missing message becomes "Application error").  A reserved code or anything else is
    not the application's to send: -32045 Application error, with the application's
    code, message and data inside ``data`` (``{"code", "message", "data"}``) so the
    client can still read them but never mistakes them for RocketWS's own codes.
    """
    text = message if isinstance(message, str) and message else "Application error"
    if isinstance(code, int) and not isinstance(code, bool) and code not in RESERVED_CODES:
        return ApplicationError(code, text, data)
    inner: dict[str, Any] = {"code": code, "message": text}
    if data is not None:
        inner["data"] = data
    return RpcError(inner, code=RpcCode.APPLICATION_ERROR)
