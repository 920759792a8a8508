"""The server's own description of its methods (``rpc.discover``), for ``help METHOD``,
``call`` and completion: backend methods over HTTP, client methods over a WebSocket."""

from __future__ import annotations

import json
from collections.abc import Callable
from fnmatch import fnmatchcase
from typing import Any

from rocketws.core.openrpc import PROXIED
from rocketws.shell.parsing import compact_json

__all__ = ["Catalog", "describe_method"]

BACKEND, CLIENT = "backend", "websocket"


class Catalog:
    """The method objects of both endpoints, fetched once per server (``reset`` on
    ``connect``).  ``fetch_backend`` calls ``rpc.discover`` on the MessagesSource;
    ``fetch_client`` on the WebSocket endpoint.  Either may fail: then that endpoint's
    methods are unknown ([]), and asked again next time."""

    def __init__(
        self,
        fetch_backend: Callable[[], Any],
        fetch_client: Callable[[], Any],
    ) -> None:
        self._fetch = {BACKEND: fetch_backend, CLIENT: fetch_client}
        self._methods: dict[str, list[dict[str, Any]]] = {}

    def reset(self) -> None:
        self._methods.clear()

    def methods(self, endpoint: str) -> list[dict[str, Any]]:
        if endpoint not in self._methods:
            try:
                document = self._fetch[endpoint]()
            except Exception:  # unreachable, refused, not a RocketWS: nothing known
                return []
            methods = document.get("methods") if isinstance(document, dict) else None
            if not isinstance(methods, list):
                return []
            self._methods[endpoint] = [
                m for m in methods if isinstance(m, dict) and isinstance(m.get("name"), str)
            ]
        return self._methods[endpoint]

    def names(self, endpoint: str) -> list[str]:
        return [str(m["name"]) for m in self.methods(endpoint)]

    def find(self, name: str) -> list[tuple[str, dict[str, Any]]]:
        """(endpoint, method object) of every endpoint that has ``name``; else the first
        proxied pattern of the WebSocket's that matches ``name`` (the route serving it)."""
        found = [
            (endpoint, m)
            for endpoint in (BACKEND, CLIENT)
            for m in self.methods(endpoint)
            if m["name"] == name
        ]
        if not found:
            for m in self.methods(CLIENT):
                pattern = _proxied_pattern(m)
                if pattern is not None and fnmatchcase(name, pattern):
                    return [(CLIENT, m)]
        return found


def _proxied_pattern(method: dict[str, Any]) -> str | None:
    """The route pattern of a proxied method object (``core.openrpc.PROXIED``), else None."""
    mark = method.get(PROXIED)
    pattern = mark.get("pattern") if isinstance(mark, dict) else None
    return pattern if isinstance(pattern, str) else None


def describe_method(endpoint: str, method: dict[str, Any]) -> str:
    """``help METHOD``: what it takes, returns and may answer, from its method object."""
    pattern = _proxied_pattern(method)
    if endpoint == BACKEND:
        where = "backend method (call NAME PARAMS)"
    elif pattern is not None:
        where = f"proxied to the application, route {pattern!r}: WebSocket rpc method"
    else:
        where = "WebSocket client method"
    lines = [f"{method['name']}  [{where}]", f"  {method.get('summary', '')}".rstrip()]
    params = method.get("params") or []
    if params:
        lines.append("  params (by name or position):")
        for p in params:
            if not isinstance(p, dict):
                continue
            flag = "required" if p.get("required") else "optional"
            schema = compact_json(p.get("schema", {}))
            lines.append(f"    {p.get('name')} ({flag}) {schema}")
            if p.get("summary"):
                lines.append(f"      {p['summary']}")
    else:
        lines.append("  no params")
    result = method.get("result")
    if isinstance(result, dict):
        lines.append(f"  result: {compact_json(result.get('schema', {}))}")
    errors = [e for e in method.get("errors") or [] if isinstance(e, dict)]
    if errors:
        lines.append("  errors: " + ", ".join(f"{e.get('code')} {e.get('message')}" for e in errors))
    return "\n".join(lines) + "\n"


def discover_over_websocket(url: str, timeout: float) -> Any:
    """``rpc.discover`` on the WebSocket endpoint (pushes before the answer are skipped)."""
    from websockets.sync.client import connect

    with connect(url, open_timeout=timeout, close_timeout=1.0, compression=None) as ws:
        ws.send(json.dumps({"jsonrpc": "2.0", "method": "rpc.discover", "id": "discover"}))
        while True:
            reply = json.loads(ws.recv(timeout=timeout))
            if isinstance(reply, dict) and reply.get("id") == "discover":
                return reply.get("result")
