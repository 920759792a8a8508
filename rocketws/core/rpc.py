"""JSON-RPC method tables and dispatch: typed calls in, typed responses out.

Each method is declared once, as a ``Method`` (name, function, ``Param`` tuple, summary,
result schema); argument binding, ``-32602`` errors and ``describe`` all read that one
declaration.  Two tables: ``client_methods`` (WebSocket clients, ``ClientContext``) and
``backend_methods`` (MessagesSource and Redis message source, ``BackendContext``).

``dispatch`` is the byte-level edge (parse, serve, encode the whole response document
once); ``serve`` answers one parsed entry and ``dispatch_parsed`` a whole parsed
document, for callers that already hold a ``jsonrpc.Parsed`` (the Redis source).
No JSON-RPC library is involved: see docs/protocol.md, "Dispatch".
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
import operator
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from rocketws.brokers.base import Control, Published
from rocketws.core import disconnect as disconnects
from rocketws.core import jsonrpc, openrpc, streams
from rocketws.core.auth import ANONYMOUS_MODE, Admission, Authenticator
from rocketws.core.channels import validate_channel
from rocketws.core.codes import RpcCode
from rocketws.core.exceptions import InvalidParams, LimitExceeded, NotSubscribed, RpcError
from rocketws.core.jsonrpc import Call, ErrorResponse, Invalid, Parsed, Response, Result, new
from rocketws.core.node import ChannelProxy, Node
from rocketws.core.proxy import NO_PROXIES, CallContext, Proxies, validate_method
from rocketws.core.session import Session
from rocketws.core.stats import INVALID, PARSE, UNKNOWN, RpcStats

__all__ = [
    "Param",
    "Method",
    "Methods",
    "table",
    "describe",
    "Caller",
    "ClientContext",
    "BackendContext",
    "client_methods",
    "connecting_methods",
    "backend_methods",
    "dispatch",
    "dispatch_parsed",
    "serve",
    "refuse",
    "InvalidParams",
    "discover_document",
]

logger = logging.getLogger(__name__)

_ABSENT: Any = object()  # the default of a required Param: there is none


@dataclass(frozen=True, slots=True)
class Param:
    """One declared parameter: its name, a JSON Schema of its value, and a doc line.

    A param that is not ``required`` takes ``default`` when the caller leaves it out.
    The schema describes the value; it is not checked on calls (the method checks the
    values it must, e.g. channel names, with a precise ``data.reason``).
    """

    name: str
    schema: Mapping[str, Any] = field(default_factory=dict)
    required: bool = True
    doc: str = ""
    default: Any = None


@dataclass(frozen=True, slots=True, eq=False)
class Method:
    """A JSON-RPC method: ``func(context, *args)`` with ``args`` bound from ``params``.

    ``rest``, when set, takes any further positional params (each described by its schema).
    ``concurrent``: called alone (not in a batch) and given a ``defer``, ``dispatch`` hands
    it over to be served apart, so a slow call (``rpc``) holds back no other request.
    Construction checks that ``func``'s signature names exactly these params, so the
    declaration and the function cannot drift apart.  ``bind`` raises InvalidParams.
    """

    name: str
    func: Callable[..., Any]
    params: tuple[Param, ...] = ()
    summary: str = ""
    result: Mapping[str, Any] = field(default_factory=dict)
    rest: Param | None = None
    concurrent: bool = False
    errors: tuple[RpcCode, ...] = ()  # what it may answer besides -32602/-32603 (OpenRPC)
    # ``many(context, [args, ...])``: runs a run of consecutive calls of this method in a
    # batch at once (emit: one broker round trip), answering each with its result or
    # the RpcError it failed with, in order.
    many: Callable[[Any, list[Sequence[Any]]], list[Any]] | None = None
    # Derived once, for ``bind``:
    _names: tuple[str, ...] = field(init=False, repr=False)
    _defaults: tuple[Any, ...] = field(init=False, repr=False)
    _required: int = field(init=False, repr=False)
    _by_name: Callable[[dict[str, Any]], Sequence[Any]] = field(init=False, repr=False)
    _known: frozenset[str] = field(init=False, repr=False)
    _needed: frozenset[str] = field(init=False, repr=False)  # the required names
    _optional: Mapping[str, Any] = field(init=False, repr=False)  # name -> default

    def __post_init__(self) -> None:
        names = tuple(p.name for p in self.params)
        required = sum(p.required for p in self.params)
        if any(p.required for p in self.params[required:]):
            raise TypeError(f"{self.name}: required params must come before optional ones")
        signature = list(inspect.signature(self.func).parameters.values())[1:]  # after ctx
        declared = [p.name for p in signature if p.kind is not p.VAR_POSITIONAL]
        variadic = any(p.kind is p.VAR_POSITIONAL for p in signature)
        if tuple(declared) != names or variadic != (self.rest is not None):
            raise TypeError(
                f"{self.name}: {self.func.__name__}{inspect.signature(self.func)} "
                f"does not match the declared params {names}"
            )
        object.__setattr__(self, "_names", names)
        object.__setattr__(
            self, "_defaults", tuple(_ABSENT if p.required else p.default for p in self.params)
        )
        object.__setattr__(self, "_required", required)
        # All params by name in one C call (raises KeyError when one is absent).
        if len(names) >= 2:
            by_name: Callable[[dict[str, Any]], Sequence[Any]] = operator.itemgetter(*names)
        elif names:
            by_name = functools.partial(_one, operator.itemgetter(names[0]))
        else:
            by_name = _none
        object.__setattr__(self, "_by_name", by_name)
        object.__setattr__(self, "_known", frozenset(names))
        object.__setattr__(self, "_needed", frozenset(names[:required]))
        object.__setattr__(self, "_optional", {p.name: p.default for p in self.params[required:]})

    def bind(self, params: list[Any] | dict[str, Any]) -> Sequence[Any]:
        """The positional arguments for ``func`` (after the context), from ``params``.

        By position or by name (spec section 4.2).  Raises InvalidParams (-32602) for a
        missing required param, too many positional params, or an unknown name.
        """
        names = self._names
        if type(params) is list:
            n = len(params)
            if n == len(names) or (n > len(names) and self.rest is not None):
                return params
            if n > len(names):
                raise InvalidParams(
                    {"reason": f"too many positional params: {self.name} takes at most {len(names)}, got {n}"}
                )
            if n < self._required:
                raise _missing(names[n])
            return params + list(self._defaults[n:])
        assert isinstance(params, dict)
        given = params.keys()
        if given <= self._known:  # no unknown name: then all given, or the defaults added
            if len(params) == len(names):
                return self._by_name(params)
            if self._needed <= given:
                return self._by_name({**self._optional, **params})
        raise self._misfit(params)

    def _misfit(self, params: dict[str, Any]) -> InvalidParams:
        """The error for named ``params`` that miss a required one or hold an unknown one."""
        for name in self._names[: self._required]:
            if name not in params:
                return _missing(name)
        unknown = sorted(set(params) - self._known)
        return InvalidParams({"reason": f"unexpected param(s) for {self.name}: {', '.join(unknown)}"})


def _one(get: Callable[[dict[str, Any]], Any], params: dict[str, Any]) -> tuple[Any]:
    return (get(params),)


def _none(_params: dict[str, Any]) -> tuple[()]:
    return ()


def _missing(name: str) -> InvalidParams:
    return InvalidParams({"param": name, "reason": f"missing required param {name!r}"})


Methods = dict[str, Method]


def table(*methods: Method) -> Methods:
    """A method table: name -> Method."""
    return {m.name: m for m in methods}


def describe(methods: Methods) -> list[dict[str, Any]]:
    """Each method's name, summary, params (as JSON Schema) and result, sorted by name.

    The shape follows OpenRPC's Method and ContentDescriptor objects, so a later OpenRPC
    document can be built from it.
    """
    out = []
    for m in sorted(methods.values(), key=lambda m: m.name):
        params = [_describe_param(p) for p in m.params]
        if m.rest is not None:
            params.append({**_describe_param(m.rest), "required": False, "variadic": True})
        out.append(
            {
                "name": m.name,
                "summary": m.summary,
                "paramStructure": "either",
                "params": params,
                "result": {"name": "result", "schema": dict(m.result)},
            }
        )
    return out


def _describe_param(p: Param) -> dict[str, Any]:
    schema = dict(p.schema)
    if not p.required and p.default is not None:
        schema["default"] = p.default
    return {"name": p.name, "summary": p.doc, "required": p.required, "schema": schema}


# -- shared declarations --------------------------------------------------------------

_CHANNEL = Param(
    "channel",
    {"type": "string", "minLength": 1},
    doc="channel name: no control characters, at most MAX_CHANNEL_LENGTH characters",
)
_DATA = Param("data", doc="any JSON value, pushed as is")
_DELIVERED = {"type": "integer", "minimum": 0}
_BROKER = (RpcCode.BROKER_UNAVAILABLE,)
_TOKEN = (RpcCode.TOKEN_INVALID, RpcCode.TOKEN_EXPIRED)
_CHANNELS = {"type": "array", "items": {"type": "string"}}


def ping(_ctx: object) -> str:
    return "pong"


_PING = Method("ping", ping, summary="Liveness check.", result={"const": "pong"})

# -- client methods (WebSocket) -------------------------------------------------------


class Caller(Protocol):
    """What a client method sees: the node, the caller's session, the channel-name limit,
    for ``connect``/``refresh`` the process's Authenticator and the connection, and for
    ``rpc``, ``subscribe`` and ``send_data`` the proxies (``core.proxy``).

    A ``ClientContext``, or the WebSocket connection itself (so an idle connection holds
    no context object of its own).
    """

    @property
    def node(self) -> Node: ...
    @property
    def session(self) -> Session: ...
    @property
    def max_channel_length(self) -> int: ...
    @property
    def auth(self) -> Authenticator: ...
    @property
    def link(self) -> Admission | None: ...
    @property
    def channel_proxy(self) -> ChannelProxy | None: ...
    @property
    def proxies(self) -> Proxies:
        """The process's proxies; ``proxies.routes.patterns()`` lists what ``rpc`` routes."""
        ...

    def proxy_call(self, method: str, params: Any) -> Any:
        """``rpc``: the application's result (``core.proxy.Proxies.call``)."""
        ...


@dataclass(frozen=True, slots=True)
class ClientContext:
    """A ``Caller`` made of plain values (tests, in-process callers)."""

    node: Node
    session: Session
    max_channel_length: int
    auth: Authenticator = ANONYMOUS_MODE
    link: Admission | None = None
    channel_proxy: ChannelProxy | None = None
    proxies: Proxies = NO_PROXIES

    def proxy_call(self, method: str, params: Any) -> Any:
        session = self.session
        return self.proxies.call(CallContext(method, session.id, session.user, session.meta), params)


def subscribe(ctx: Caller, channel: Any, token: Any, recover: Any) -> dict[str, Any]:
    name = validate_channel(channel, ctx.max_channel_length)
    position = None if recover is None else streams.position_param(recover, "recover")
    verifier = ctx.auth.verifier
    if token is not None:
        if verifier is None:  # as RocketWS 0.2 answered a second param
            raise InvalidParams(
                {
                    "param": "token",
                    "reason": "too many params: no token key is configured, so no subscription token",
                }
            )
        if not isinstance(token, str):
            raise InvalidParams({"param": "token", "reason": "must be a string"})
    extra = ctx.node.subscribe_client(
        ctx.session, name, token, verifier, proxy=ctx.channel_proxy, recover=position
    )
    if extra:
        return {"channel": channel, "subscribed": True, **extra}
    return {"channel": channel, "subscribed": True}


def unsubscribe(ctx: Caller, channel: Any) -> dict[str, Any]:
    ctx.node.unsubscribe(ctx.session, validate_channel(channel, ctx.max_channel_length))
    return {"channel": channel, "subscribed": False}


def send_data(ctx: Caller, channel: Any, data: Any) -> dict[str, Any]:
    name = validate_channel(channel, ctx.max_channel_length)
    node = ctx.node
    published = node.send(ctx.session, name, data, ctx.channel_proxy)
    node.stats.publications["send_data"] += 1
    return _emitted(name, published)


# -- history (issue 11; docs/protocol.md#history-and-recovery) ------------------------------


def _history_args(since: Any, limit: Any, reverse: Any) -> tuple[Any, int | None, bool]:
    position = None if since is None else streams.position_param(since, "since")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise InvalidParams({"param": "limit", "reason": "must be an integer >= 0"})
    if not isinstance(reverse, bool):
        raise InvalidParams({"param": "reverse", "reason": "must be true or false"})
    return position, limit, reverse


def client_history(ctx: Caller, channel: Any, since: Any, limit: Any, reverse: Any) -> dict[str, Any]:
    name = validate_channel(channel, ctx.max_channel_length)
    args = _history_args(since, limit, reverse)
    if name not in ctx.session.channels:
        raise NotSubscribed({"channel": name, "reason": "history is for the channel's subscribers"})
    return ctx.node.history(name, *args)


_HISTORY_PARAMS = (
    Param(
        "since",
        {
            "type": ["object", "null"],
            "properties": {"offset": {"type": "integer", "minimum": 0}, "epoch": {"type": "string"}},
        },
        required=False,
        doc="only publications after this position; another epoch: none (compare `epoch`)",
    ),
    Param(
        "limit",
        {"type": ["integer", "null"], "minimum": 0},
        required=False,
        doc="at most this many (absent: HISTORY_LIMIT; over HISTORY_MAX_LIMIT: -32602; 0: the position only)",
    ),
    Param("reverse", {"type": "boolean"}, required=False, default=False, doc="newest first"),
)
_EMITTED = {
    "type": "object",
    "properties": {
        "channel": {"type": "string"},
        "delivered": _DELIVERED,
        "offset": {"type": "integer"},
        "epoch": {"type": "string"},
    },
}  # emit's and send_data's answer (offset and epoch on a channel with history)
_PUBLICATIONS = {"type": "array", "items": {"type": "object"}}
_HISTORY_RESULT = {
    "type": "object",
    "properties": {
        "channel": {"type": "string"},
        "epoch": {"type": "string"},
        "offset": {"type": "integer"},
        "publications": _PUBLICATIONS,
    },
}


def subscriptions(ctx: Caller) -> list[str]:
    return sorted(ctx.session.channels)


def heartbeat(_ctx: Caller) -> dict[str, str]:
    return {"heartbeat": "ok"}


# -- connection authentication (core/auth.py; docs/protocol.md#authentication) --


def connect(ctx: Caller, token: Any, name: Any, version: Any) -> dict[str, Any]:
    return ctx.auth.connect(ctx.link, ctx.session.id, token, name, version)


def refresh(ctx: Caller, token: Any) -> dict[str, Any]:
    return ctx.auth.refresh(ctx.link, ctx.session.user, token)


def _optional(name: str, doc: str) -> Param:
    return Param(name, {"type": "string"}, required=False, doc=doc)


_CONNECT = Method(
    "connect",
    connect,
    (
        _optional("token", "connection JWT; absent: the connect proxy decides (cookies, headers)"),
        _optional("name", "client name, for the connect proxy and logs"),
        _optional("version", "client version, for the connect proxy and logs"),
    ),
    "Authenticate this connection (the first call when authentication is on).",
    errors=(*_TOKEN, RpcCode.CONNECT_REFUSED, RpcCode.AUTH_UNAVAILABLE, RpcCode.ALREADY_CONNECTED),
    result={
        "type": "object",
        "properties": {
            "client": {"type": "string"},
            "user": {"type": "string"},
            "expires_in": {"type": ["integer", "null"]},
            "ping_interval": {"type": "number"},
            "channels": _CHANNELS,
        },
    },
)
_REFRESH = Method(
    "refresh",
    refresh,
    (Param("token", {"type": "string"}, doc="a new connection JWT for the same sub"),),
    "Extend an expiring connection with a new token.",
    {"type": "object", "properties": {"expires_in": {"type": ["integer", "null"]}}},
    errors=_TOKEN,
)


# -- the RPC proxy (core/proxy.py; docs/operations.md#proxies) ---------------------------


def rpc_call(ctx: Caller, method: Any, params: Any) -> Any:
    if params is not None and not isinstance(params, (dict, list)):
        raise InvalidParams({"param": "params", "reason": "must be an object or an array (or left out)"})
    return ctx.proxy_call(validate_method(method), params)


_RPC = Method(
    "rpc",
    rpc_call,
    (
        Param(
            "method",
            {"type": "string", "minLength": 1, "maxLength": 255},
            doc="the application's method; PROXY routes it by pattern to a URL or an in-process handler",
        ),
        Param(
            "params",
            {"type": ["object", "array"]},
            required=False,
            doc="the method's params, passed as given",
        ),
    ),
    "Call a method of the application behind RocketWS (the RPC proxy): its result, or its error.",
    {"description": "the application's result, as it answered it"},
    concurrent=True,
)


def _subscribed(value: bool) -> dict[str, Any]:
    return {"type": "object", "properties": {"channel": {"type": "string"}, "subscribed": {"const": value}}}


# -- presence (namespaces with `presence`; docs/protocol.md#presence) --------------------


def _presence_answer(channel: str, entries: Mapping[str, Any]) -> dict[str, Any]:
    return {"channel": channel, "clients": {client: entry.as_json() for client, entry in entries.items()}}


def _stats_answer(channel: str, stats: Any) -> dict[str, Any]:
    return {"channel": channel, "num_clients": stats.num_clients, "num_users": stats.num_users}


def client_presence(ctx: Caller, channel: Any) -> dict[str, Any]:
    name = validate_channel(channel, ctx.max_channel_length)
    return _presence_answer(name, ctx.node.presence(name, ctx.session))


def client_presence_stats(ctx: Caller, channel: Any) -> dict[str, Any]:
    name = validate_channel(channel, ctx.max_channel_length)
    return _stats_answer(name, ctx.node.presence_stats(name, ctx.session))


def backend_presence(ctx: BackendContext, channel: Any) -> dict[str, Any]:
    name = validate_channel(channel, ctx.max_channel_length)
    return _presence_answer(name, ctx.node.presence(name))


def backend_presence_stats(ctx: BackendContext, channel: Any) -> dict[str, Any]:
    name = validate_channel(channel, ctx.max_channel_length)
    return _stats_answer(name, ctx.node.presence_stats(name))


_ENTRY = {
    "type": "object",
    "properties": {
        "client": {"type": "string"},
        "user": {"type": "string"},
        "info": {"description": "the connection's public info (connection token or connect proxy)"},
        "chan_info": {"description": "the subscription token's info, or null"},
    },
}
_PRESENCE_RESULT = {
    "type": "object",
    "properties": {
        "channel": {"type": "string"},
        "clients": {"type": "object", "additionalProperties": _ENTRY, "description": "client id -> entry"},
    },
}
_STATS_RESULT = {
    "type": "object",
    "properties": {"channel": {"type": "string"}, "num_clients": _DELIVERED, "num_users": _DELIVERED},
}


def _presence_methods(
    presence: Callable[..., Any], stats: Callable[..., Any], who: str
) -> tuple[Method, ...]:
    return (
        Method(
            "presence",
            presence,
            (_CHANNEL,),
            f"The channel's subscribers on every node ({who}).",
            _PRESENCE_RESULT,
        ),
        Method(
            "presence_stats",
            stats,
            (_CHANNEL,),
            f"The channel's subscribers and distinct users, counted on every node ({who}).",
            _STATS_RESULT,
        ),
    )


_CLIENT_PRESENCE = _presence_methods(
    client_presence, client_presence_stats, "where the namespace's allow_presence lets this connection"
)
_BACKEND_PRESENCE = _presence_methods(
    backend_presence, backend_presence_stats, "where the namespace has presence"
)

client_methods: Methods = table(
    Method(
        "subscribe",
        subscribe,
        (
            _CHANNEL,
            _optional(
                "token",
                "subscription JWT (claims sub, channel, exp, info) where the namespace has "
                'allow_subscribe "token"; checked whenever given',
            ),
            Param(
                "recover",
                {
                    "type": ["object", "null"],
                    "properties": {"offset": {"type": "integer", "minimum": 0}, "epoch": {"type": "string"}},
                },
                required=False,
                doc="the last position received on a channel with history: answer what came after "
                "it, complete, or recovered false",
            ),
        ),
        "Subscribe this connection to a channel (idempotent); on a channel with history the "
        "answer adds epoch and offset, and with recover: recovered and publications.",
        _subscribed(True),
        errors=(
            RpcCode.NOT_ALLOWED,
            RpcCode.PERMISSION_DENIED,
            RpcCode.LIMIT_EXCEEDED,
            *_TOKEN,
            *_BROKER,
        ),
    ),
    Method(
        "history",
        client_history,
        (_CHANNEL, *_HISTORY_PARAMS),
        "Publications kept in a channel this connection is subscribed to.",
        _HISTORY_RESULT,
        errors=(RpcCode.NOT_SUBSCRIBED, RpcCode.NOT_ALLOWED, *_BROKER),
    ),
    Method(
        "unsubscribe",
        unsubscribe,
        (_CHANNEL,),
        "Unsubscribe from a channel (idempotent).",
        _subscribed(False),
    ),
    Method(
        "send_data",
        send_data,
        (_CHANNEL, _DATA),
        "Publish to the other subscribers of a channel this connection is in (on a channel with "
        "history the answer adds offset and epoch).",
        _EMITTED,
        errors=(RpcCode.NOT_SUBSCRIBED, RpcCode.NOT_ALLOWED, RpcCode.PERMISSION_DENIED, *_BROKER),
    ),
    Method("subscriptions", subscriptions, (), "This connection's channels, sorted.", _CHANNELS),
    _PING,
    Method(
        "heartbeat",
        heartbeat,
        (),
        "Liveness check (RocketWS 0.2 compatibility).",
        {"type": "object", "properties": {"heartbeat": {"const": "ok"}}},
    ),
    _CONNECT,
    _REFRESH,
    *_CLIENT_PRESENCE,
    _RPC,
)

connecting_methods: Methods = table(_CONNECT, _PING)
"""What a connection may call before ``connect`` succeeds; other client methods: -32010."""

# -- backend methods (MessagesSource) -------------------------------------------------


@dataclass(frozen=True, slots=True)
class BackendContext:
    """What a backend method sees: the node, the channel-name limit, and which ingress
    path it serves (``source``: ``http`` or ``redis``, for the publication counts)."""

    node: Node
    max_channel_length: int
    source: str = "http"


def emit(ctx: BackendContext, channel: Any, data: Any, idempotency_key: Any) -> dict[str, Any]:
    name = validate_channel(channel, ctx.max_channel_length)
    key = streams.idempotency_key_param(idempotency_key)
    node = ctx.node
    published = node.publish(name, data, key)
    node.stats.publications[ctx.source] += 1
    return _emitted(name, published)


def _emitted(channel: str, published: Published) -> dict[str, Any]:
    if published.offset:
        return {
            "channel": channel,
            "delivered": published.delivered,
            "offset": published.offset,
            "epoch": published.epoch,
        }
    return {"channel": channel, "delivered": published.delivered}


def emit_many(ctx: BackendContext, calls: list[Sequence[Any]]) -> list[Any]:
    """The emits of one batch, published through one ``node.publish_many``."""
    answers: list[Any] = [None] * len(calls)
    todo: list[tuple[str, Any, str | None]] = []
    where: list[int] = []
    for i, (channel, data, key) in enumerate(calls):
        try:
            todo.append(
                (validate_channel(channel, ctx.max_channel_length), data, streams.idempotency_key_param(key))
            )
        except RpcError as exc:
            answers[i] = exc
            continue
        where.append(i)
    node = ctx.node
    published = 0
    for i, item, answer in zip(where, todo, node.publish_many(todo), strict=True):
        if isinstance(answer, RpcError):
            answers[i] = answer
        elif isinstance(answer, Exception):
            raise answer
        else:
            answers[i] = _emitted(item[0], answer)
            published += 1
    node.stats.publications[ctx.source] += published
    return answers


def backend_history(
    ctx: BackendContext, channel: Any, since: Any, limit: Any, reverse: Any
) -> dict[str, Any]:
    name = validate_channel(channel, ctx.max_channel_length)
    return ctx.node.history(name, *_history_args(since, limit, reverse))


def notify_all(ctx: BackendContext, data: Any) -> dict[str, int]:
    node = ctx.node
    delivered = node.notify_all(data)
    node.stats.publications[ctx.source] += 1
    return {"delivered": delivered}


def available_channels(ctx: BackendContext) -> list[str]:
    return ctx.node.available_channels()


def total_subscribers(ctx: BackendContext, channel: Any) -> int:
    if channel is None:
        return ctx.node.total_subscribers()
    return ctx.node.total_subscribers(validate_channel(channel, ctx.max_channel_length))


# -- server-side control: every connection of one user, on every node --------------------

MAX_USER_LENGTH = 255  # characters in a user id (a token's `sub`)
CONTROL_CODES = range(4000, 5000)  # close codes a backend may ask for (private use)
_USER = Param(
    "user",
    {"type": "string", "minLength": 1, "maxLength": MAX_USER_LENGTH},
    doc="the user id (a connection token's `sub`); anonymous connections have none",
)
_REACHED = {
    "type": "object",
    "properties": {"user": {"type": "string"}, "reached": _DELIVERED},
    "description": "reached: connections of the user, on every node, the command applied to",
}


def _user(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidParams({"param": "user", "reason": "must be a non-empty string"})
    if len(value) > MAX_USER_LENGTH:
        raise InvalidParams({"param": "user", "reason": f"longer than {MAX_USER_LENGTH} characters"})
    return value


def disconnect_user(ctx: BackendContext, user: Any, code: Any, reason: Any) -> dict[str, Any]:
    name = _user(user)
    default = disconnects.BY_SERVER
    if code is None:
        code = default.code
    elif isinstance(code, bool) or not isinstance(code, int) or code not in CONTROL_CODES:
        raise InvalidParams(
            {"param": "code", "reason": "must be a close code 4000-4999 (4000-4499: reconnect allowed)"}
        )
    if reason is None:
        reason = default.reason
    elif not isinstance(reason, str) or len(reason.encode()) > 123 or not reason.isprintable():
        raise InvalidParams(
            {"param": "reason", "reason": "must be printable text of at most 123 UTF-8 bytes"}
        )
    reached = ctx.node.control(Control("disconnect", name, code=code, reason=reason))
    return {"user": name, "reached": reached}


def _change_subscription(ctx: BackendContext, action: str, user: Any, channel: Any) -> dict[str, Any]:
    name = _user(user)
    validate_channel(channel, ctx.max_channel_length)
    if action == "subscribe":
        ctx.node.namespaces.lookup(channel)  # an unknown namespace: -32005 here, before any node
    reached = ctx.node.control(Control(action, name, channel))
    return {"user": name, "channel": channel, "reached": reached}


def subscribe_user(ctx: BackendContext, user: Any, channel: Any) -> dict[str, Any]:
    return _change_subscription(ctx, "subscribe", user, channel)


def unsubscribe_user(ctx: BackendContext, user: Any, channel: Any) -> dict[str, Any]:
    return _change_subscription(ctx, "unsubscribe", user, channel)


def refresh_user(ctx: BackendContext, user: Any, expire_at: Any) -> dict[str, Any]:
    name = _user(user)
    if expire_at is not None and (
        isinstance(expire_at, bool)
        or not isinstance(expire_at, (int, float))
        or not math.isfinite(expire_at)
        or expire_at < 0
    ):
        raise InvalidParams({"param": "expire_at", "reason": "must be Unix seconds (a number >= 0) or null"})
    reached = ctx.node.control(Control("refresh", name, expire_at=expire_at))
    return {"user": name, "expire_at": expire_at, "reached": reached}


_CONTROL_METHODS = (
    Method(
        "disconnect",
        disconnect_user,
        (
            _USER,
            Param(
                "code",
                {"type": "integer", "minimum": 4000, "maximum": 4999},
                required=False,
                doc="close code; 4000-4499 lets the client reconnect, 4500-4999 does not "
                "(absent: 4504 `disconnected by the server`)",
            ),
            Param(
                "reason",
                {"type": "string", "maxLength": 123},
                required=False,
                doc="close reason (at most 123 UTF-8 bytes; absent: `disconnected by the server`)",
            ),
        ),
        "Close every connection of a user, on every node.",
        _REACHED,
        errors=_BROKER,
    ),
    Method(
        "subscribe",
        subscribe_user,
        (_USER, _CHANNEL),
        "Subscribe every connection of a user to a channel (each is sent a `subscribed` notification).",
        _REACHED,
        errors=(RpcCode.NOT_ALLOWED, *_BROKER),
    ),
    Method(
        "unsubscribe",
        unsubscribe_user,
        (_USER, _CHANNEL),
        "Unsubscribe every connection of a user from a channel (each that was subscribed is "
        "sent an `unsubscribed` notification).",
        _REACHED,
        errors=_BROKER,
    ),
    Method(
        "refresh",
        refresh_user,
        (
            _USER,
            Param(
                "expire_at",
                {"type": ["number", "null"], "minimum": 0},
                required=False,
                doc="new expiry of the user's connections, Unix seconds (`refresh_required` "
                "before it, closed with 4011 REFRESH_GRACE after it, as for a token's `exp`; "
                "a time past: expired now); absent or null: they never expire",
            ),
        ),
        "Set a new expiry on every connection of a user, on every node.",
        _REACHED,
        errors=_BROKER,
    ),
)

backend_methods: Methods = table(
    Method(
        "emit",
        emit,
        (
            _CHANNEL,
            _DATA,
            _optional(
                "idempotency_key",
                "the same key on the same channel within HISTORY IDEMPOTENCY_WINDOW publishes once "
                "and answers the first result again (at most 255 characters)",
            ),
        ),
        "Push data to every subscriber of a channel (on a channel with history the answer adds "
        "offset and epoch).",
        _EMITTED,
        errors=(RpcCode.NOT_ALLOWED, *_BROKER),
        many=emit_many,
    ),
    Method(
        "history",
        backend_history,
        (_CHANNEL, *_HISTORY_PARAMS),
        "Publications kept in a channel with history.",
        _HISTORY_RESULT,
        errors=(RpcCode.NOT_ALLOWED, *_BROKER),
    ),
    Method(
        "notify_all",
        notify_all,
        (_DATA,),
        "Push data once to every open connection.",
        {"type": "object", "properties": {"delivered": _DELIVERED}},
        errors=_BROKER,
    ),
    Method(
        "available_channels",
        available_channels,
        (),
        "Channels with at least one subscriber, sorted.",
        _CHANNELS,
        errors=_BROKER,
    ),
    Method(
        "total_subscribers",
        total_subscribers,
        (
            Param(
                "channel",
                {"type": ["string", "null"]},
                required=False,
                doc="count this channel's subscribers; absent or null: open connections",
            ),
        ),
        "Subscribers of a channel, or open connections.",
        _DELIVERED,
        errors=_BROKER,
    ),
    *_CONTROL_METHODS,
    *_BACKEND_PRESENCE,
    _PING,
)

# -- info and rpc.discover (docs/operations.md) -------------------------------------------


def info(ctx: BackendContext) -> dict[str, Any]:
    nodes, complete = ctx.node.cluster_info()
    totals = {
        key: sum(int(n.get(key, 0)) for n in nodes) for key in ("connections", "users", "subscriptions")
    }
    return {"node": nodes[0], "nodes": nodes, "complete": complete, "totals": {"nodes": len(nodes), **totals}}


_NODE_INFO = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "version": {"type": "string"},
        "started_at": {"type": "number", "description": "Unix time"},
        "uptime": {"type": "number", "description": "seconds"},
        "connections": _DELIVERED,
        "users": _DELIVERED,
        "channels": _DELIVERED,
        "subscriptions": _DELIVERED,
        "broker": {
            "type": "object",
            "properties": {"kind": {"enum": ["memory", "redis"]}, "connected": {"type": "boolean"}},
        },
    },
}
_INFO = Method(
    "info",
    info,
    (),
    "This node's id, version, uptime, connections, users, channels and broker state, and "
    "every live node's on the Redis broker (each as of its last heartbeat, TTL/3 at most).",
    {
        "type": "object",
        "properties": {
            "node": _NODE_INFO,
            "nodes": {"type": "array", "items": _NODE_INFO},
            "complete": {
                "type": "boolean",
                "description": "false: the broker was unreachable, only this node",
            },
            "totals": {"type": "object"},
        },
    },
)

DISCOVER = "rpc.discover"
_TITLES = {"websocket": "RocketWS client API (WebSocket)", "backend": "RocketWS backend API (MessagesSource)"}


def discover_document(
    endpoint: str, methods: Methods, extra: Sequence[Mapping[str, Any]] = ()
) -> dict[str, Any]:
    """The OpenRPC document of an endpoint (``websocket`` or ``backend``) serving ``methods``."""
    from rocketws import __version__  # the package root imports only codes/exceptions

    return openrpc.document(methods, title=_TITLES[endpoint], version=__version__, extra=extra)


def _discover(endpoint: str, methods: Methods) -> Callable[[Any], dict[str, Any]]:
    def discover(ctx: Any) -> dict[str, Any]:
        document = ctx.node.api.get(endpoint)
        return document if document is not None else discover_document(endpoint, methods)

    return discover


_DISCOVER_RESULT = {
    "type": "object",
    "description": "an OpenRPC 1.x document",
    "required": ["openrpc", "methods"],
}
client_methods[DISCOVER] = Method(
    DISCOVER,
    _discover("websocket", client_methods),
    (),
    "This endpoint's methods as an OpenRPC 1.x document (params, results, errors).",
    _DISCOVER_RESULT,
)
backend_methods[_INFO.name] = _INFO
backend_methods[DISCOVER] = Method(
    DISCOVER,
    _discover("backend", backend_methods),
    (),
    "This endpoint's methods as an OpenRPC 1.x document (params, results, errors).",
    _DISCOVER_RESULT,
)

_BACKEND_ONLY = frozenset(backend_methods) - frozenset(client_methods)

# -- dispatch -------------------------------------------------------------------------

_INTERNAL = {"reason": "internal server error"}
_clock = time.perf_counter  # times documents when stats are kept (METRICS on)


def serve(entry: Call | Invalid, methods: Methods, context: Any, stats: RpcStats | None = None) -> Response:
    """Run one entry and return its outcome, a notification's included.

    Never raises: an unknown method is -32601, bad params -32602, an RpcError its own
    code, any other exception -32603 (a bug: logged with its traceback, no detail sent).
    The caller drops a notification's outcome (spec section 4.1).  ``stats``: where the
    call and its error are counted (None: not counted).
    """
    if isinstance(entry, Invalid):
        if stats is not None:
            stats.error(INVALID, RpcCode.INVALID_REQUEST)
        return jsonrpc.invalid_response(entry)
    method = methods.get(entry.method)
    if method is None:
        response = _not_found(entry, methods)
        if stats is not None:
            stats.error(UNKNOWN, response.code)
        return response
    if stats is not None:
        calls = stats.calls
        calls[method.name] = calls.get(method.name, 0) + 1
    try:
        return new(Result, (entry.id, method.func(context, *method.bind(entry.params))))
    except RpcError as exc:
        if stats is not None:
            stats.error(method.name, exc.code)
        return ErrorResponse(entry.id, exc.code, exc.data, exc.message)
    except Exception:
        logger.exception("internal error in JSON-RPC method %r", entry.method)
        if stats is not None:
            stats.error(method.name, RpcCode.INTERNAL_ERROR)
        return ErrorResponse(entry.id, RpcCode.INTERNAL_ERROR, _INTERNAL)


def _not_found(call: Call, methods: Methods) -> ErrorResponse:
    data: dict[str, Any] = {"method": call.method}
    if methods is connecting_methods and call.method in client_methods:
        data["reason"] = "call connect first"
        return ErrorResponse(call.id, RpcCode.NOT_CONNECTED, data)
    if methods is client_methods and call.method in _BACKEND_ONLY:
        data["reason"] = "backend-only method: call it on the MessagesSource (HTTP)"
    return ErrorResponse(call.id, RpcCode.METHOD_NOT_FOUND, data)


def dispatch_parsed(
    parsed: Parsed, methods: Methods, context: Any, stats: RpcStats | None = None
) -> list[Response]:
    """Run every entry of a parsed document; return the responses due, in order.

    Notifications are run too but get no response; invalid entries and requests get one
    each (spec sections 4.1 and 6).  The batch-size limit is the caller's.
    """
    responses: list[Response] = []
    entries = parsed.entries
    i, n = 0, len(entries)
    while i < n:
        entry = entries[i]
        if type(entry) is Call:
            method = methods.get(entry.method)
            if method is not None and method.many is not None:
                j = i + 1
                while j < n and type(entries[j]) is Call and entries[j].method == entry.method:  # type: ignore[union-attr]
                    j += 1
                if j - i > 1:
                    run: list[Call] = entries[i:j]  # type: ignore[assignment]
                    for call, response in zip(run, _serve_many(run, method, context, stats), strict=True):
                        if not call.notification:
                            responses.append(response)
                    i = j
                    continue
        response = serve(entry, methods, context, stats)
        if isinstance(entry, Invalid) or not entry.notification:
            responses.append(response)
        i += 1
    return responses


Defer = Callable[[Callable[[], "bytes | None"]], RpcError | None]
"""Takes a call to serve apart (``Method.concurrent``): runs the given function later,
sending the answer it returns (None: none due), and returns None; or refuses at once
with the RpcError to answer instead (too many calls waiting)."""


def _serve_many(
    calls: list[Call], method: Method, context: Any, stats: RpcStats | None = None
) -> list[Response]:
    """``serve`` for a run of calls of ``method``, through ``method.many`` (counted in
    ``stats`` as ``serve`` counts)."""
    if stats is not None:
        stats.calls[method.name] = stats.calls.get(method.name, 0) + len(calls)
    out: list[Response | None] = [None] * len(calls)
    bound: list[Sequence[Any]] = []
    where: list[int] = []
    for i, call in enumerate(calls):
        try:
            bound.append(method.bind(call.params))
        except RpcError as exc:
            if stats is not None:
                stats.error(method.name, exc.code)
            out[i] = ErrorResponse(call.id, exc.code, exc.data, exc.message)
            continue
        where.append(i)
    assert method.many is not None
    try:
        answers = method.many(context, bound) if bound else []
    except Exception:
        logger.exception("internal error in JSON-RPC method %r (batched)", method.name)
        answers = [None] * len(bound)
        for i in where:
            if stats is not None:
                stats.error(method.name, RpcCode.INTERNAL_ERROR)
            out[i] = ErrorResponse(calls[i].id, RpcCode.INTERNAL_ERROR, _INTERNAL)
        where = []
    for i, answer in zip(where, answers, strict=False):
        call = calls[i]
        if isinstance(answer, RpcError):
            if stats is not None:
                stats.error(method.name, answer.code)
            out[i] = ErrorResponse(call.id, answer.code, answer.data, answer.message)
        else:
            out[i] = new(Result, (call.id, answer))
    return [r for r in out if r is not None]


def dispatch(
    data: bytes | str,
    methods: Methods,
    context: Any,
    max_batch_size: int,
    max_depth: int = jsonrpc.MAX_NESTING_DEPTH,
    defer: Defer | None = None,
    stats: RpcStats | None = None,
) -> bytes | None:
    """Answer one JSON-RPC document; return the response bytes, or None when none is due.

    Never raises for bad input: parse errors (-32700), invalid requests (-32600, also a
    document nested deeper than ``max_depth``), a batch over ``max_batch_size`` (one
    -32003, id null), unknown methods and bad params all become error responses as the
    spec prescribes.  A lone call of a ``concurrent`` method goes to ``defer`` (None is
    returned: its answer comes later); in a batch it is served in turn like the others.
    ``stats``: counts calls and errors, and times the document (a single call per method,
    a batch whole); None: nothing is counted or timed.
    """
    try:
        parsed = jsonrpc.parse(data, max_depth)
    except jsonrpc.ParseError as exc:
        if stats is not None:
            stats.error(PARSE, RpcCode.PARSE_ERROR)
        return jsonrpc.encode(ErrorResponse(None, RpcCode.PARSE_ERROR, {"reason": str(exc)}))
    if not parsed.batch:
        entry = parsed.entries[0]
        if defer is not None and isinstance(entry, Call) and _concurrent(entry, methods):
            refused = defer(functools.partial(_serve_alone, entry, methods, context, stats))
            if refused is not None and stats is not None:  # counted like a call that failed
                stats.calls[entry.method] = stats.calls.get(entry.method, 0) + 1
                stats.error(entry.method, refused.code)
            if refused is None or entry.notification:
                return None
            return _encode(ErrorResponse(entry.id, refused.code, refused.data, refused.message))
        if stats is None:
            response = serve(entry, methods, context)
        else:
            started = _clock()
            response = serve(entry, methods, context, stats)
            if isinstance(entry, Call) and entry.method in methods:
                stats.observe(entry.method, _clock() - started)
        if isinstance(entry, Call) and entry.notification:
            return None  # executed, never answered (spec section 4.1)
        return _encode(response)
    if len(parsed.entries) > max_batch_size:
        limit = LimitExceeded({"limit": "max_batch_size", "max": max_batch_size, "reason": "batch too large"})
        if stats is not None:
            stats.error(INVALID, limit.code)
        return jsonrpc.encode(ErrorResponse(None, limit.code, limit.data))
    if stats is None:
        responses = dispatch_parsed(parsed, methods, context)
    else:
        started = _clock()
        responses = dispatch_parsed(parsed, methods, context, stats)
        stats.batches.observe(_clock() - started)
    # A batch of only notifications is answered with nothing at all (spec section 6).
    return _encode(responses) if responses else None


def _concurrent(call: Call, methods: Methods) -> bool:
    method = methods.get(call.method)
    return method is not None and method.concurrent


def _serve_alone(call: Call, methods: Methods, context: Any, stats: RpcStats | None = None) -> bytes | None:
    """A deferred call's answer (None for a notification), counted and timed in ``stats``."""
    if stats is None:
        response = serve(call, methods, context)
    else:
        started = _clock()
        response = serve(call, methods, context, stats)
        stats.observe(call.method, _clock() - started)
    return None if call.notification else _encode(response)


def refuse(data: bytes | str, error: RpcError) -> bytes | None:
    """Answer every request of one JSON-RPC document with ``error`` without running any
    (the rate limit); None when only notifications came.  Never raises for bad input."""
    try:
        parsed = jsonrpc.parse(data)
    except jsonrpc.ParseError as exc:
        return jsonrpc.encode(ErrorResponse(None, RpcCode.PARSE_ERROR, {"reason": str(exc)}))
    responses: list[Response] = [
        ErrorResponse(None if isinstance(entry, Invalid) else entry.id, error.code, error.data)
        for entry in parsed.entries
        if isinstance(entry, Invalid) or not entry.notification
    ]
    if not responses:
        return None
    return _encode(responses if parsed.batch else responses[0])


def _encode(response: Response | list[Response]) -> bytes:
    try:
        return jsonrpc.encode(response)
    except (TypeError, ValueError):  # a result JSON cannot hold: our bug, not the caller's
        logger.exception("cannot encode a JSON-RPC response")
        return jsonrpc.encode(ErrorResponse(None, RpcCode.INTERNAL_ERROR, _INTERNAL))
