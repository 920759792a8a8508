"""Reference push server on asyncio ``websockets`` (its ``broadcast()``, compression off).

It speaks the subset of the RocketWS wire contract (docs/protocol.md) that the benchmark
drives, so both servers run under the same load generator:

- WebSocket on ``/``: JSON-RPC 2.0 ``subscribe`` / ``unsubscribe`` / ``ping`` (single or
  batch) answering ``{"channel": .., "subscribed": true|false}`` / ``"pong"``.
- HTTP MessagesSource (aiohttp): ``POST /`` with JSON-RPC ``emit`` {"channel", "data"} ->
  ``{"channel": .., "delivered": N}``, ``ping``, batches and notifications (204 when the
  request held only notifications); ``GET /health``.
- Pushes: ``{"jsonrpc": "2.0", "method": "message", "params": {"channel", "data", "ts"}}``
  encoded once per publication (orjson) and handed to ``websockets.broadcast``.

Usage::

    python -m benchmarks.peers.websockets_peer --ws-port 0 --http-port 0

Port 0 picks an ephemeral port; the bound ports are logged to stderr in the same words
RocketWS uses (``websocket listening on ws://HOST:PORT/`` and ``messages source
listening on http://HOST:PORT/``) and also printed to stdout as one JSON line.
It is a benchmark reference, not a conforming implementation of every error rule.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from typing import Any

import orjson
from aiohttp import web
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

JSON_HEADERS = {"Content-Type": "application/json"}


class Peer:
    """Channel registry plus the two endpoints' request handlers."""

    def __init__(self) -> None:
        self.channels: dict[str, set[ServerConnection]] = {}
        self.connections: set[ServerConnection] = set()

    # -- JSON-RPC dispatch (shared by both endpoints) ------------------------------

    def _call(self, req: Any, conn: ServerConnection | None) -> dict[str, Any] | None:
        if not isinstance(req, dict) or req.get("jsonrpc") != "2.0" or "method" not in req:
            return _error(None, -32600, "Invalid Request")
        rid = req.get("id")
        notification = "id" not in req
        method = req["method"]
        params = req.get("params") or {}
        try:
            if method == "ping":
                result: Any = "pong"
            elif conn is not None and method in ("subscribe", "unsubscribe"):
                channel = params["channel"] if isinstance(params, dict) else params[0]
                if method == "subscribe":
                    self.channels.setdefault(channel, set()).add(conn)
                else:
                    subs = self.channels.get(channel)
                    if subs is not None:
                        subs.discard(conn)
                        if not subs:
                            del self.channels[channel]
                result = {"channel": channel, "subscribed": method == "subscribe"}
            elif conn is None and method == "emit":
                if isinstance(params, dict):
                    channel, data = params["channel"], params["data"]
                else:
                    channel, data = params[0], params[1]
                result = {"channel": channel, "delivered": self.emit(channel, data)}
            else:
                return None if notification else _error(rid, -32601, "Method not found")
        except (KeyError, IndexError, TypeError):
            return None if notification else _error(rid, -32602, "Invalid params")
        if notification:
            return None
        return {"jsonrpc": "2.0", "result": result, "id": rid}

    def dispatch(self, body: bytes | str, conn: ServerConnection | None) -> bytes | None:
        """One JSON-RPC message (single or batch) in, the response bytes or None out."""
        try:
            msg = orjson.loads(body)
        except orjson.JSONDecodeError:
            return orjson.dumps(_error(None, -32700, "Parse error"))
        if isinstance(msg, list):
            if not msg:
                return orjson.dumps(_error(None, -32600, "Invalid Request"))
            out = [r for r in (self._call(m, conn) for m in msg) if r is not None]
            return orjson.dumps(out) if out else None
        resp = self._call(msg, conn)
        return None if resp is None else orjson.dumps(resp)

    def emit(self, channel: str, data: Any) -> int:
        """Encode the push once and broadcast the same bytes; returns the subscriber count."""
        subs = self.channels.get(channel)
        if not subs:
            return 0
        frame = orjson.dumps(
            {
                "jsonrpc": "2.0",
                "method": "message",
                "params": {"channel": channel, "data": data, "ts": time.time()},
            }
        )
        broadcast(subs, frame, text=True)
        return len(subs)

    # -- endpoints -----------------------------------------------------------------

    async def ws_handler(self, conn: ServerConnection) -> None:
        self.connections.add(conn)
        try:
            async for message in conn:
                reply = self.dispatch(message, conn)
                if reply is not None:
                    await conn.send(reply, text=True)
        except ConnectionClosed:
            pass
        finally:
            self.connections.discard(conn)
            for channel in [c for c, subs in self.channels.items() if conn in subs]:
                subs = self.channels[channel]
                subs.discard(conn)
                if not subs:
                    del self.channels[channel]

    async def http_post(self, request: web.Request) -> web.Response:
        reply = self.dispatch(await request.read(), None)
        if reply is None:
            return web.Response(status=204)
        return web.Response(body=reply, headers=JSON_HEADERS)

    async def http_health(self, request: web.Request) -> web.Response:
        body = {"status": "ok", "connections": len(self.connections), "channels": len(self.channels)}
        return web.Response(body=orjson.dumps(body), headers=JSON_HEADERS)


def _error(rid: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "error": {"code": code, "message": message}, "id": rid}


async def main_async(host: str, ws_port: int, http_port: int) -> None:
    peer = Peer()
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)

    app = web.Application(client_max_size=1024 * 1024)
    app.router.add_post("/", peer.http_post)
    app.router.add_get("/health", peer.http_health)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, http_port, backlog=4096)
    await site.start()
    http_bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async with serve(
        peer.ws_handler, host, ws_port, compression=None, max_size=64 * 1024, backlog=4096
    ) as server:
        ws_bound = next(iter(server.sockets)).getsockname()[1]
        print(f"websocket listening on ws://{host}:{ws_bound}/", file=sys.stderr, flush=True)
        print(
            f"messages source listening on http://{host}:{http_bound}/",
            file=sys.stderr,
            flush=True,
        )
        print(json.dumps({"ws_port": ws_bound, "http_port": http_bound}), flush=True)
        await stop
    await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--ws-port", type=int, default=0, help="0 = ephemeral")
    parser.add_argument("--http-port", type=int, default=0, help="0 = ephemeral")
    args = parser.parse_args(argv)
    asyncio.run(main_async(args.host, args.ws_port, args.http_port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
