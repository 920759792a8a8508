"""The WebSocket endpoint: one ``Connection`` per upgraded socket; plain HTTP gets 426/404."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from typing import Any

from gevent.event import Event

from rocketws.config import Config
from rocketws.core.connection import Liveness
from rocketws.core.disconnect import Disconnect
from rocketws.core.node import Node
from rocketws.transports.websocket.connection import Connection, Flusher, Sweeper, configure_socket

logger = logging.getLogger("rocketws.transports.websocket")


class WebSocketApp:
    """The WebSocket endpoint: a Connection per upgraded socket; plain HTTP gets 426/404."""

    def __init__(self, node: Node, config: Config) -> None:
        self.node = node
        self.config = config
        self.flusher = Flusher()
        self.connections: set[Connection] = set()
        liveness = Liveness.from_seconds(config.ping_interval, config.pong_timeout, config.write_timeout)
        self.sweeper = Sweeper(liveness, self.connections)  # runs while connections are open
        self._idle = Event()
        self._idle.set()
        self._close_all: Disconnect | None = None  # set by close_all (shutdown)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        """The WSGI app for requests that are not WebSocket upgrades."""
        if environ.get("PATH_INFO") == "/":
            body = b"This is a WebSocket endpoint: connect with a WebSocket client.\n"
            start_response(
                "426 Upgrade Required",
                [
                    ("Upgrade", "websocket"),
                    ("Content-Type", "text/plain; charset=utf-8"),
                    ("Content-Length", str(len(body))),
                ],
            )
            return [body]
        body = b"Not found\n"
        start_response(
            "404 Not Found",
            [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
        )
        return [body]

    def origin_allowed(self, origin: str | None) -> bool:
        """Whether a browser page of ``origin`` may connect (no Origin header: not a
        browser, always allowed)."""
        allowed = self.config.allowed_origins
        if origin is None or "*" in allowed:
            return True
        return origin.rstrip("/").lower() in allowed

    def full(self) -> bool:
        """True when ``max_connections`` WebSockets are open: new upgrades get 503."""
        return len(self.connections) >= self.config.max_connections

    def accept(self, sock: socket.socket, received: bytes, peer: Any) -> None:
        """Serve an upgraded, non-blocking socket (and the bytes already read from it)."""
        configure_socket(sock, self.config.send_buffer)
        conn = Connection(sock, self.node, self.flusher, self.sweeper, self.config, self._closed)
        self.connections.add(conn)
        self._idle.clear()
        self.sweeper.start()
        logger.debug("connection %s opened from %s", conn.session.id, peer)
        conn.start(received)
        if self._close_all is not None:  # an upgrade that finished during shutdown
            conn.close(self._close_all)

    def _closed(self, conn: Connection) -> None:
        self.connections.discard(conn)
        if not self.connections:
            self._idle.set()
            self.sweeper.stop()
        logger.debug("connection %s closed", conn.session.id)

    def close_all(self, why: Disconnect) -> None:
        """Begin closing every connection (queued frames are still delivered first);
        connections whose upgrade finishes later are closed the same way."""
        self._close_all = why
        for conn in list(self.connections):
            conn.close(why)

    def wait_closed(self, timeout: float) -> bool:
        """Wait until no connection is open; return whether that happened in time."""
        return bool(self._idle.wait(timeout))
