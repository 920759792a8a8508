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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from rocketws.brokers.base import Control, Published
from rocketws.core import disconnect as disconnects
from rocketws.core import jsonrpc, streams
from rocketws.core.auth import ANONYMOUS_MODE, Admission, Authenticator
from rocketws.core.channels import validate_channel
from rocketws.core.codes import RpcCode
from rocketws.core.exceptions import InvalidParams, LimitExceeded, NotSubscribed, RpcError
from rocketws.core.jsonrpc import Call, ErrorResponse, Invalid, Parsed, Response, Result, new
from rocketws.core.node import Node
from rocketws.core.session import Session

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
    Construction checks that ``func``'s signature names exactly these params, so the
    declaration and the function cannot drift apart.  ``bind`` raises InvalidParams.
    """

    name: str
    func: Callable[..., Any]
    params: tuple[Param, ...] = ()
    summary: str = ""
    result: Mapping[str, Any] = field(default_factory=dict)
    rest: Param | None = None
    # ``many(context, [args, ...])``: runs a run of consecutive calls of this method in a
    # batch at once (emit: one broker round trip), answering each with its result or
    # the RpcError it failed with, in order.
    many: Callable[[Any, list[Sequence[Any]]], list[Any]] | None = None
    # Derived once, for ``bind``:
    _names: tuple[str, ...] = field(init=False, repr=False)
    _defaults: tuple[Any, ...] = field(init=False, repr=False)
    _required: int = field(init=False, repr=False)
    _by_name: Callable[[dict[str, Any]], Sequence[Any]] = field(init=False, repr=False)

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
        args: Sequence[Any]
        try:
            args = self._by_name(params)
        except KeyError:
            args = [params.get(name, default) for name, default in zip(names, self._defaults, strict=True)]
            for name, arg in zip(names, args, strict=True):
                if arg is _ABSENT:
                    raise _missing(name) from None
            given = sum(name in params for name in names)
        else:
            given = len(names)
        if len(params) != given:
            unknown = sorted(set(params) - set(names))
            raise InvalidParams({"reason": f"unexpected param(s) for {self.name}: {', '.join(unknown)}"})
        return args


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
_CHANNELS = {"type": "array", "items": {"type": "string"}}


def ping(_ctx: object) -> str:
    return "pong"


_PING = Method("ping", ping, summary="Liveness check.", result={"const": "pong"})

# -- client methods (WebSocket) -------------------------------------------------------


class Caller(Protocol):
    """What a client method sees: the node, the caller's session, the channel-name limit,
    and for ``connect``/``refresh`` the process's Authenticator and the connection.

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


@dataclass(frozen=True, slots=True)
class ClientContext:
    """A ``Caller`` made of plain values (tests, in-process callers)."""

    node: Node
    session: Session
    max_channel_length: int
    auth: Authenticator = ANONYMOUS_MODE
    link: Admission | None = None


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
    extra = ctx.node.subscribe_client(ctx.session, name, token, verifier, position)
    if extra:
        return {"channel": channel, "subscribed": True, **extra}
    return {"channel": channel, "subscribed": True}


def unsubscribe(ctx: Caller, channel: Any) -> dict[str, Any]:
    ctx.node.unsubscribe(ctx.session, validate_channel(channel, ctx.max_channel_length))
    return {"channel": channel, "subscribed": False}


def send_data(ctx: Caller, channel: Any, data: Any) -> dict[str, Any]:
    name = validate_channel(channel, ctx.max_channel_length)
    return _emitted(name, ctx.node.send(ctx.session, name, data))


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
    {
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
)


def _subscribed(value: bool) -> dict[str, Any]:
    return {"type": "object", "properties": {"channel": {"type": "string"}, "subscribed": {"const": value}}}


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
    ),
    Method(
        "history",
        client_history,
        (_CHANNEL, *_HISTORY_PARAMS),
        "Publications kept in a channel this connection is subscribed to.",
        _HISTORY_RESULT,
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
        "Publish to the other subscribers of a channel this connection is in.",
        {"type": "object", "properties": {"channel": {"type": "string"}, "delivered": _DELIVERED}},
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
)

connecting_methods: Methods = table(_CONNECT, _PING)
"""What a connection may call before ``connect`` succeeds; other client methods: -32010."""

# -- backend methods (MessagesSource) -------------------------------------------------


@dataclass(frozen=True, slots=True)
class BackendContext:
    """What a backend method sees: the node and the channel-name limit."""

    node: Node
    max_channel_length: int


def emit(ctx: BackendContext, channel: Any, data: Any, idempotency_key: Any) -> dict[str, Any]:
    name = validate_channel(channel, ctx.max_channel_length)
    key = streams.idempotency_key_param(idempotency_key)
    return _emitted(name, ctx.node.publish(name, data, key))


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
    for i, item, answer in zip(where, todo, ctx.node.publish_many(todo), strict=True):
        if isinstance(answer, RpcError):
            answers[i] = answer
        elif isinstance(answer, Exception):
            raise answer
        else:
            answers[i] = _emitted(item[0], answer)
    return answers


def backend_history(
    ctx: BackendContext, channel: Any, since: Any, limit: Any, reverse: Any
) -> dict[str, Any]:
    name = validate_channel(channel, ctx.max_channel_length)
    return ctx.node.history(name, *_history_args(since, limit, reverse))


def notify_all(ctx: BackendContext, data: Any) -> dict[str, int]:
    return {"delivered": ctx.node.notify_all(data)}


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
    ),
    Method(
        "subscribe",
        subscribe_user,
        (_USER, _CHANNEL),
        "Subscribe every connection of a user to a channel (each is sent a `subscribed` notification).",
        _REACHED,
    ),
    Method(
        "unsubscribe",
        unsubscribe_user,
        (_USER, _CHANNEL),
        "Unsubscribe every connection of a user from a channel (each that was subscribed is "
        "sent an `unsubscribed` notification).",
        _REACHED,
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
                doc="new expiry of the user's connections, Unix seconds; absent or null: none",
            ),
        ),
        "Record a new expiry for every connection of a user.",
        _REACHED,
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
        {
            "type": "object",
            "properties": {
                "channel": {"type": "string"},
                "delivered": _DELIVERED,
                "offset": {"type": "integer"},
                "epoch": {"type": "string"},
            },
        },
        many=emit_many,
    ),
    Method(
        "history",
        backend_history,
        (_CHANNEL, *_HISTORY_PARAMS),
        "Publications kept in a channel with history.",
        _HISTORY_RESULT,
    ),
    Method(
        "notify_all",
        notify_all,
        (_DATA,),
        "Push data once to every open connection.",
        {"type": "object", "properties": {"delivered": _DELIVERED}},
    ),
    Method(
        "available_channels",
        available_channels,
        (),
        "Channels with at least one subscriber, sorted.",
        _CHANNELS,
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
    ),
    *_CONTROL_METHODS,
    _PING,
)

_BACKEND_ONLY = frozenset(backend_methods) - frozenset(client_methods)

# -- dispatch -------------------------------------------------------------------------

_INTERNAL = {"reason": "internal server error"}


def serve(entry: Call | Invalid, methods: Methods, context: Any) -> Response:
    """Run one entry and return its outcome, a notification's included.

    Never raises: an unknown method is -32601, bad params -32602, an RpcError its own
    code, any other exception -32603 (a bug: logged with its traceback, no detail sent).
    The caller drops a notification's outcome (spec section 4.1).
    """
    if isinstance(entry, Invalid):
        return jsonrpc.invalid_response(entry)
    method = methods.get(entry.method)
    if method is None:
        return _not_found(entry, methods)
    try:
        return new(Result, (entry.id, method.func(context, *method.bind(entry.params))))
    except RpcError as exc:
        return ErrorResponse(entry.id, exc.code, exc.data, exc.message)
    except Exception:
        logger.exception("internal error in JSON-RPC method %r", entry.method)
        return ErrorResponse(entry.id, RpcCode.INTERNAL_ERROR, _INTERNAL)


def _not_found(call: Call, methods: Methods) -> ErrorResponse:
    data: dict[str, Any] = {"method": call.method}
    if methods is connecting_methods and call.method in client_methods:
        data["reason"] = "call connect first"
        return ErrorResponse(call.id, RpcCode.NOT_CONNECTED, data)
    if methods is client_methods and call.method in _BACKEND_ONLY:
        data["reason"] = "backend-only method: call it on the MessagesSource (HTTP)"
    return ErrorResponse(call.id, RpcCode.METHOD_NOT_FOUND, data)


def dispatch_parsed(parsed: Parsed, methods: Methods, context: Any) -> list[Response]:
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
                    for call, response in zip(run, _serve_many(run, method, context), strict=True):
                        if not call.notification:
                            responses.append(response)
                    i = j
                    continue
        response = serve(entry, methods, context)
        if isinstance(entry, Invalid) or not entry.notification:
            responses.append(response)
        i += 1
    return responses


def _serve_many(calls: list[Call], method: Method, context: Any) -> list[Response]:
    """``serve`` for a run of calls of ``method``, through ``method.many``."""
    out: list[Response | None] = [None] * len(calls)
    bound: list[Sequence[Any]] = []
    where: list[int] = []
    for i, call in enumerate(calls):
        try:
            bound.append(method.bind(call.params))
        except RpcError as exc:
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
            out[i] = ErrorResponse(calls[i].id, RpcCode.INTERNAL_ERROR, _INTERNAL)
        where = []
    for i, answer in zip(where, answers, strict=False):
        call = calls[i]
        if isinstance(answer, RpcError):
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
) -> bytes | None:
    """Answer one JSON-RPC document; return the response bytes, or None when none is due.

    Never raises for bad input: parse errors (-32700), invalid requests (-32600, also a
    document nested deeper than ``max_depth``), a batch over ``max_batch_size`` (one
    -32003, id null), unknown methods and bad params all become error responses as the
    spec prescribes.
    """
    try:
        parsed = jsonrpc.parse(data, max_depth)
    except jsonrpc.ParseError as exc:
        return jsonrpc.encode(ErrorResponse(None, RpcCode.PARSE_ERROR, {"reason": str(exc)}))
    if not parsed.batch:
        entry = parsed.entries[0]
        response = serve(entry, methods, context)
        if isinstance(entry, Call) and entry.notification:
            return None  # executed, never answered (spec section 4.1)
        return _encode(response)
    if len(parsed.entries) > max_batch_size:
        limit = LimitExceeded({"limit": "max_batch_size", "max": max_batch_size, "reason": "batch too large"})
        return jsonrpc.encode(ErrorResponse(None, limit.code, limit.data))
    responses = dispatch_parsed(parsed, methods, context)
    # A batch of only notifications is answered with nothing at all (spec section 6).
    return _encode(responses) if responses else None


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
