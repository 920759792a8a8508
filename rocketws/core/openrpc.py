"""OpenRPC 1.x documents (https://spec.open-rpc.org/) generated from the method tables.

``document`` turns a ``Methods`` table (``core/rpc.py``: each method's summary, params
with JSON Schemas, result, errors) into the document ``rpc.discover`` answers with.
``extra`` takes further method objects made elsewhere (proxied method patterns), in
the same OpenRPC shape.  A method or param without a description is refused
(``MissingDescription``): the API must describe itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from rocketws.core.codes import RPC_MESSAGES, RpcCode

if TYPE_CHECKING:
    from rocketws.core.rpc import Method, Methods, Param

__all__ = [
    "OPENRPC_VERSION",
    "COMMON_ERRORS",
    "PROXIED",
    "MissingDescription",
    "document",
    "method_object",
    "proxied_methods",
]

OPENRPC_VERSION = "1.3.2"
COMMON_ERRORS = (RpcCode.INVALID_PARAMS, RpcCode.INTERNAL_ERROR)
"""Errors any method may answer (bad params; our bug)."""


PROXIED = "x-rocketws-proxied"
"""The extension marking a proxied method object: ``{"via": "rpc", "pattern": ...}``."""
PROXY_ERRORS = (
    RpcCode.APPLICATION_UNAVAILABLE,
    RpcCode.APPLICATION_TIMEOUT,
    RpcCode.BAD_APPLICATION_ANSWER,
    RpcCode.TOO_MANY_CALLS,
    RpcCode.APPLICATION_ERROR,
)


class MissingDescription(ValueError):
    """A method or param of a table has no summary/doc line."""


def _error(code: int) -> dict[str, Any]:
    return {"code": int(code), "message": RPC_MESSAGES.get(code, "Error")}


def _param(method: str, p: Param, variadic: bool = False) -> dict[str, Any]:
    if not p.doc:
        raise MissingDescription(f"{method}: param {p.name!r} has no doc")
    schema = dict(p.schema)
    if not p.required and p.default is not None:
        schema["default"] = p.default
    out: dict[str, Any] = {
        "name": p.name,
        "summary": p.doc,
        "required": p.required and not variadic,
        "schema": schema,
    }
    if variadic:
        out["x-variadic"] = True
    return out


def method_object(m: Method) -> dict[str, Any]:
    """The OpenRPC Method Object of one declared method."""
    if not m.summary:
        raise MissingDescription(f"{m.name}: no summary")
    params = [_param(m.name, p) for p in m.params]
    if m.rest is not None:
        params.append(_param(m.name, m.rest, variadic=True))
    codes = dict.fromkeys((*m.errors, *COMMON_ERRORS))
    return {
        "name": m.name,
        "summary": m.summary,
        "paramStructure": "either",
        "params": params,
        "result": {"name": "result", "schema": dict(m.result)},
        "errors": [_error(code) for code in codes],
    }


def document(
    methods: Methods,
    *,
    title: str,
    version: str,
    description: str = "",
    extra: Iterable[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The OpenRPC document of ``methods`` (sorted by name), then ``extra`` method objects."""
    info: dict[str, Any] = {"title": title, "version": version}
    if description:
        info["description"] = description
    listed = [method_object(m) for m in sorted(methods.values(), key=lambda m: m.name)]
    listed += [dict(m) for m in extra]
    return {"openrpc": OPENRPC_VERSION, "info": info, "methods": listed}


def proxied_methods(patterns: Iterable[str], taken: Iterable[str] = ()) -> list[dict[str, Any]]:
    """One method object per RPC proxy pattern (``core.proxy.Routes.patterns()``, in
    routing order), for the WebSocket document's ``extra``.

    Each is named by its pattern (what a client puts in ``rpc``'s ``method``; a glob
    matches many) and marked ``PROXIED`` with the pattern, since it is called through
    ``rpc``, not by that name.  A pattern that is a name in ``taken`` (the table's) is
    named ``rpc:PATTERN`` so names stay unique; a repeated pattern (its later routes are
    unreachable) is listed once.  Neither URLs nor handler paths are shown.
    """
    names = set(taken)
    listed: list[dict[str, Any]] = []
    seen: set[str] = set()
    for pattern in patterns:
        if pattern in seen:
            continue
        seen.add(pattern)
        glob = any(c in pattern for c in "*?[")
        what = f"Any method matching {pattern!r}" if glob else f"Method {pattern!r}"
        listed.append(
            {
                "name": f"rpc:{pattern}" if pattern in names else pattern,
                "summary": f"{what}, served by the application: call it through rpc "
                '{"method": NAME, "params": PARAMS}.',
                "paramStructure": "either",
                "params": [
                    {
                        "name": "params",
                        "summary": "sent to the application as the request's params, as given",
                        "required": False,
                        "schema": {},
                    }
                ],
                "result": {"name": "result", "schema": {"description": "the application's result"}},
                "errors": [_error(code) for code in (*PROXY_ERRORS, *COMMON_ERRORS)],
                PROXIED: {"via": "rpc", "pattern": pattern},
            }
        )
    return listed
