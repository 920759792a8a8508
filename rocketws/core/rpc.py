"""JSON-RPC method tables and dispatch.

Two tables: ``client_methods`` (called by WebSocket clients, context ``ClientContext``)
and ``backend_methods`` (called on the MessagesSource, context ``Node``).  Dispatch of
each valid request goes through jsonrpcserver with its schema validation off:
:mod:`rocketws.protocol` has already checked the request shape per batch member.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jsonrpcserver import Error, Success, dispatch_to_response
from jsonrpcserver.response import to_serializable_one

from rocketws.core import jsonrpc
from rocketws.core.channels import validate_channel
from rocketws.core.codes import RpcCode
from rocketws.core.exceptions import InvalidParams, LimitExceeded, RpcError
from rocketws.core.node import Node
from rocketws.core.session import Session

logger = logging.getLogger(__name__)

Methods = dict[str, Callable[..., Any]]


@dataclass(frozen=True, slots=True)
class ClientContext:
    """What a client method sees: the node and the caller's session."""

    node: Node
    session: Session
    max_channel_length: int = 255


def rpc_method(func: Callable[..., Any]) -> Callable[..., Any]:
    """Adapt a plain function to jsonrpcserver: RpcError -> error, bug -> -32603."""

    @functools.wraps(func)
    def method(*args: Any, **kwargs: Any) -> Any:
        try:
            return Success(func(*args, **kwargs))
        except RpcError as exc:
            return Error(exc.code, exc.message, exc.data)
        except Exception:
            logger.exception("internal error in JSON-RPC method %r", func.__name__)
            return Error(RpcCode.INTERNAL_ERROR, "Internal error", {"reason": "internal server error"})

    # jsonrpcserver checks params with inspect.signature(method).bind() on every call;
    # computing the signature once here makes that lookup free (about 60% of its cost).
    method.__signature__ = inspect.signature(func)  # type: ignore[attr-defined]
    return method


# -- client methods (WebSocket) -------------------------------------------------------


def _channel(ctx: ClientContext, channel: Any) -> str:
    return validate_channel(channel, ctx.max_channel_length)


@rpc_method
def subscribe(ctx: ClientContext, channel: Any) -> dict[str, Any]:
    ctx.node.subscribe(ctx.session, _channel(ctx, channel))
    return {"channel": channel, "subscribed": True}


@rpc_method
def unsubscribe(ctx: ClientContext, channel: Any) -> dict[str, Any]:
    ctx.node.unsubscribe(ctx.session, _channel(ctx, channel))
    return {"channel": channel, "subscribed": False}


@rpc_method
def send_data(ctx: ClientContext, channel: Any, data: Any) -> dict[str, Any]:
    delivered = ctx.node.send_data(ctx.session, _channel(ctx, channel), data)
    return {"channel": channel, "delivered": delivered}


@rpc_method
def subscriptions(ctx: ClientContext) -> list[str]:
    return sorted(ctx.session.channels)


@rpc_method
def ping(_ctx: Any) -> str:
    return "pong"


@rpc_method
def heartbeat(_ctx: ClientContext) -> dict[str, str]:
    return {"heartbeat": "ok"}


client_methods: Methods = {
    "subscribe": subscribe,
    "unsubscribe": unsubscribe,
    "send_data": send_data,
    "subscriptions": subscriptions,
    "ping": ping,
    "heartbeat": heartbeat,
}

# -- backend methods (MessagesSource) -------------------------------------------------


@dataclass(frozen=True, slots=True)
class BackendContext:
    """What a backend method sees."""

    node: Node
    max_channel_length: int = 255


@rpc_method
def emit(ctx: BackendContext, channel: Any, data: Any) -> dict[str, Any]:
    name = validate_channel(channel, ctx.max_channel_length)
    return {"channel": name, "delivered": ctx.node.emit(name, data)}


@rpc_method
def notify_all(ctx: BackendContext, data: Any) -> dict[str, int]:
    return {"delivered": ctx.node.notify_all(data)}


@rpc_method
def available_channels(ctx: BackendContext) -> list[str]:
    return ctx.node.available_channels()


@rpc_method
def total_subscribers(ctx: BackendContext, channel: Any = None) -> int:
    if channel is None:
        return ctx.node.total_subscribers()
    return ctx.node.total_subscribers(validate_channel(channel, ctx.max_channel_length))


backend_methods: Methods = {
    "emit": emit,
    "notify_all": notify_all,
    "available_channels": available_channels,
    "total_subscribers": total_subscribers,
    "ping": ping,
}

_BACKEND_ONLY = frozenset(backend_methods) - frozenset(client_methods)

# -- dispatch -------------------------------------------------------------------------


def _identity(value: Any) -> Any:
    return value


def _accept(_value: Any) -> None:
    return None


def _normalise(response: dict, methods: Methods) -> dict:
    """Give jsonrpcserver's own errors a ``data`` object, like ours."""
    error = response.get("error")
    if error is None:
        return response
    data = error.get("data")
    if error["code"] == RpcCode.METHOD_NOT_FOUND and not isinstance(data, dict):
        detail: dict[str, Any] = {"method": data}
        if data in _BACKEND_ONLY and methods is client_methods:
            detail["reason"] = "backend-only method: call it on the MessagesSource (HTTP)"
        error["data"] = detail
    elif error["code"] == RpcCode.INVALID_PARAMS and not isinstance(data, dict):
        error["data"] = {"reason": str(data)}
    return response


def dispatch(data: bytes | str, methods: Methods, context: Any, max_batch: int = 1000) -> bytes | None:
    """Answer one JSON-RPC document; return the response bytes, or None when none is due.

    Never raises for bad input: parse errors, invalid requests, unknown methods and bad
    params all become JSON-RPC error responses as the spec prescribes.
    """
    try:
        parsed = jsonrpc.parse(data)
    except jsonrpc.ParseError as exc:
        return jsonrpc.dumps(jsonrpc.error_response(None, RpcCode.PARSE_ERROR, {"reason": str(exc)}))
    if parsed.batch and len(parsed.entries) > max_batch:
        exc_ = LimitExceeded({"limit": "max_batch_size", "max": max_batch, "reason": "batch too large"})
        return jsonrpc.dumps(jsonrpc.error_response(None, exc_.code, exc_.data))
    calls = [e for e in parsed.entries if isinstance(e, jsonrpc.Call)]
    answers: Any = None
    if calls:
        # One jsonrpcserver batch for all valid calls: its per-document overhead once.
        answers = dispatch_to_response(
            [c.request for c in calls],  # type: ignore[arg-type]  # already parsed
            methods,
            context=context,
            deserializer=_identity,
            validator=_accept,  # type: ignore[arg-type]
            post_process=to_serializable_one,
        )
    if isinstance(answers, dict):  # jsonrpcserver's own failure: one error for all
        answers = [answers] * sum(not c.notification for c in calls)
    pending = iter(answers or ())
    responses = []
    for entry in parsed.entries:
        if isinstance(entry, jsonrpc.Invalid):
            responses.append(jsonrpc.invalid_response(entry))
        elif not entry.notification:
            responses.append(_normalise(next(pending), methods))
    if not responses:
        return None
    try:
        return jsonrpc.dumps(responses if parsed.batch else responses[0])
    except (TypeError, ValueError):  # a result we cannot encode: our bug, not the caller's
        logger.exception("cannot encode a JSON-RPC response")
        return jsonrpc.dumps(
            jsonrpc.error_response(None, RpcCode.INTERNAL_ERROR, {"reason": "internal server error"})
        )


__all__ = [
    "ClientContext",
    "BackendContext",
    "client_methods",
    "backend_methods",
    "dispatch",
    "rpc_method",
    "InvalidParams",
]
