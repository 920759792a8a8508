"""The WebSocket endpoint: one ``Connection`` per upgraded socket."""

from __future__ import annotations

import logging
import socket
from functools import partial
from importlib import resources
from typing import Any

from gevent.event import Event

from rocketws.config import Config
from rocketws.core import assets, handshake
from rocketws.core.connection import Liveness
from rocketws.core.disconnect import Disconnect
from rocketws.core.handshake import Extension, Request
from rocketws.core.node import Node
from rocketws.transports.proxies import Proxies
from rocketws.transports.tls import TlsStream
from rocketws.transports.websocket.auth import auth_timing, build_authenticator
from rocketws.transports.websocket.connection import Connection, Flusher, Sweeper, configure_socket

logger = logging.getLogger("rocketws.transports.websocket")


def client_assets() -> dict[str, handshake.Answer]:
    """``/rocketws.js`` (the package's copy of clients/js/rocketws.js), read once; empty
    (404, logged) when the installation lacks it."""
    try:
        body = resources.files("rocketws").joinpath("static/rocketws.js").read_bytes()
    except OSError as exc:
        logger.warning("rocketws.js not served: %s (a broken installation?)", exc)
        return {}
    asset = assets.Asset.of(body, assets.JAVASCRIPT)
    return {assets.CLIENT_PATH: partial(assets.respond, asset)}


class WebSocketApp:
    """The WebSocket endpoint: a Connection per upgraded socket (the handshake is
    ``handshake.WebSocketServer``'s)."""

    def __init__(self, node: Node, config: Config) -> None:
        self.node = node
        self.config = config
        self.flusher = Flusher()
        self.connections: set[Connection] = set()
        self.auth = build_authenticator(config)  # anonymous mode when nothing is configured
        self.timing = auth_timing(config)
        self.proxies = Proxies(config)  # imports in-process handlers: ConfigError
        # With authentication on, the sweep also serves the connect and refresh deadlines.
        deadlines = min(config.connect_timeout, config.refresh_grace) if self.auth.required else 0.0
        liveness = Liveness.from_seconds(
            config.ping_interval, config.pong_timeout, config.write_timeout, deadlines
        )
        self.sweeper = Sweeper(liveness, self.connections)  # runs while connections are open
        self._idle = Event()
        self._idle.set()
        self._close_all: Disconnect | None = None  # set by close_all (shutdown)
        self.assets = client_assets() if config.serve_client else {}

    def origin_allowed(self, origin: str | None) -> bool:
        """Whether a browser page of ``origin`` may connect (no Origin header: not a
        browser, always allowed)."""
        return handshake.origin_allowed(origin, self.config.allowed_origins)

    def full(self) -> bool:
        """True when ``max_connections`` WebSockets are open: new upgrades get 503."""
        return len(self.connections) >= self.config.max_connections

    def accept(
        self,
        sock: socket.socket | TlsStream,
        received: bytes,
        peer: Any,
        *,
        subprotocol: str | None = None,
        extensions: tuple[Extension, ...] = (),
        request: Request | None = None,
    ) -> None:
        """Serve an upgraded, non-blocking socket (and the bytes already read from it),
        with the subprotocol and extensions its handshake agreed; ``request``: the
        upgrade request (its token and forwarded headers, when authentication is on)."""
        configure_socket(sock, self.config.send_buffer)
        token: str | None = None
        kept: tuple[tuple[str, str], ...] = ()
        forwarded: tuple[tuple[str, str], ...] = ()
        if request is not None:
            if self.auth.required:
                token, kept = self.auth.at_upgrade(request)
            forwarded = self.proxies.at_upgrade(request)
        conn = Connection(
            sock,
            self.node,
            self.flusher,
            self.sweeper,
            self.config,
            self._closed,
            subprotocol=subprotocol,
            extensions=extensions,
            auth=self.auth,
            timing=self.timing,
            upgrade_headers=kept,
            proxies=self.proxies,
            proxy_headers=forwarded,
        )
        self.connections.add(conn)
        self._idle.clear()
        self.sweeper.start()
        logger.debug("connection %s opened from %s", conn.session.id, peer)
        conn.start(received, token)
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
