"""Builds the Node and both servers from a Config; handles signals and graceful shutdown.

Signals: SIGTERM/SIGINT drain and stop; with TLS configured, SIGHUP re-reads the
certificate and key for new handshakes (open connections stay as they are).
"""

from __future__ import annotations

import logging
import logging.config
import signal
from collections.abc import Callable
from typing import Any, TypeVar

import gevent
from gevent.event import Event
from gevent.server import StreamServer

from rocketws.brokers import create_broker
from rocketws.brokers.base import StreamLimits
from rocketws.config import Address, Config
from rocketws.core import disconnect
from rocketws.core.channels import Namespaces
from rocketws.core.deflate import Deflater
from rocketws.core.hub import Hub
from rocketws.core.node import Node
from rocketws.core.rpc import backend_methods
from rocketws.core.spec_examples import spec_example_methods
from rocketws.core.streams import HistorySettings
from rocketws.process.supervisor import reuse_port_listener
from rocketws.sources.http import MessagesSourceApp, MessagesSourceServer
from rocketws.sources.redis import RedisSource
from rocketws.transports.tls import TlsContext
from rocketws.transports.websocket import WebSocketApp, WebSocketServer

logger = logging.getLogger("rocketws.server")  # the name operators filter on; kept stable
S = TypeVar("S", bound=StreamServer)


class StartupError(Exception):
    """The server could not start (e.g. a port is taken)."""


def configure_logging(config: Config) -> None:
    """Apply ``settings.LOGGING`` (and ``LOG_LEVEL``, when set) once at start."""
    logging.config.dictConfig(config.logging)
    if config.log_level:
        logging.getLogger().setLevel(config.log_level)


def _listen(address: Address, what: str, reuse_port: bool, build: Callable[[Any], S]) -> S:
    """``build(listener)`` with its socket bound; StartupError naming the address if not."""
    try:
        listener = reuse_port_listener(address) if reuse_port else (address.host, address.port)
        server = build(listener)
        server.init_socket()
    except OSError as exc:
        raise StartupError(f"cannot listen on {address} for the {what}: {exc.strerror or exc}") from None
    return server


def _url(scheme: str, server: StreamServer) -> str:
    host, port = server.address[:2]
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}:{port}/"


class Server:
    """One RocketWS process: a Node, the WebSocket endpoint and the MessagesSource.

    ``reuse_port``: listen with SO_REUSEPORT (a worker of ``runserver --workers N``).
    """

    def __init__(self, config: Config, *, reuse_port: bool = False) -> None:
        """Raises ConfigError when the TLS files are not usable, StartupError when a port
        cannot be listened on."""
        self.config = config
        self.tls = None
        if config.tls_cert is not None and config.tls_key is not None:
            self.tls = TlsContext(config.tls_cert, config.tls_key)
        ws_tls = self.tls if config.tls_websocket else None
        ms_tls = self.tls if config.tls_backend else None
        self.hub = Hub()
        self.broker = create_broker(config.broker, stream_limits(config))
        self.node = Node(
            self.hub,
            self.broker,
            max_channels_per_connection=config.max_channels_per_connection,
            namespaces=Namespaces(config.namespaces, allow_unknown=config.allow_unknown_namespaces),
            deflater=Deflater() if config.compression else None,
            history=HistorySettings(
                config.history_default_limit, config.history_max_limit, config.recovery_max
            ),
        )
        self.ws_app = WebSocketApp(self.node, config)
        methods = dict(backend_methods)
        if config.spec_example_methods:
            methods.update(spec_example_methods)
        self.ms_app = MessagesSourceApp(self.node, config, methods)
        self.redis_source = (
            None
            if config.redis_source is None
            else RedisSource(
                config.redis_source,
                self.node,
                max_channel_length=config.max_channel_length,
                max_batch_size=config.max_batch_size,
                max_nesting_depth=config.max_nesting_depth,
            )
        )
        self.ws_server = _listen(
            config.websocket,
            "websocket",
            reuse_port,
            lambda listener: WebSocketServer(listener, self.ws_app, config.handshake_timeout, ws_tls),
        )
        self.ms_server = _listen(
            config.backend,
            "messages source",
            reuse_port,
            lambda listener: MessagesSourceServer(listener, self.ms_app, config.backend_idle_timeout, ms_tls),
        )
        self._stop = Event()

    @property
    def ws_url(self) -> str:
        return _url("ws" if self.ws_server.tls is None else "wss", self.ws_server)

    @property
    def ms_url(self) -> str:
        return _url("http" if self.ms_server.tls is None else "https", self.ms_server)

    def reload_tls(self) -> None:
        """SIGHUP: new TLS handshakes use the certificate and key as the files are now."""
        if self.tls is not None:
            self.tls.reload()

    def start(self) -> None:
        self.node.start()
        if self.redis_source is not None:
            self.redis_source.start()
            logger.info("redis message source subscribed to %r", self.redis_source.channel)
        self.ws_server.start()
        self.ms_server.start()
        self._log_auth()
        if self.tls is not None:
            logger.info(
                "TLS certificate %s (sha256 %s); SIGHUP reloads it", self.tls.cert, self.tls.fingerprint
            )
        logger.info("websocket listening on %s", self.ws_url)
        logger.info("messages source listening on %s", self.ms_url)

    def _log_auth(self) -> None:
        """One line on connection authentication; a warning when anonymous mode faces
        more than loopback."""
        auth = self.ws_app.auth
        host = self.config.websocket.host
        if not auth.required and host not in ("127.0.0.1", "::1", "localhost"):
            logger.warning(
                "%s, and the websocket listens on %s: anyone who can reach it can connect",
                auth.describe(),
                host,
            )
        else:
            logger.info("%s", auth.describe())

    def request_stop(self) -> None:
        """Ask ``serve_forever`` to shut down (safe from a signal handler)."""
        self._stop.set()

    def serve_forever(self) -> None:
        """Start, serve until SIGTERM/SIGINT, then shut down gracefully."""
        # Signal handlers before start(): its "listening" lines tell a supervisor (and
        # tests) that this process is ready, and a SIGTERM from then on must drain it,
        # not kill it with the default action.
        handlers = [gevent.signal_handler(sig, self.request_stop) for sig in (signal.SIGTERM, signal.SIGINT)]
        if self.tls is not None:  # without TLS, SIGHUP keeps its default action
            handlers.append(gevent.signal_handler(signal.SIGHUP, self.reload_tls))
        try:
            self.start()
        except BaseException:
            for handler in handlers:
                handler.cancel()
            raise
        try:
            self._stop.wait()
        finally:
            for handler in handlers:
                handler.cancel()
            self.shutdown()

    def shutdown(self) -> None:
        """Stop accepting, close every WebSocket with 1001, wait up to shutdown_timeout."""
        logger.info("shutting down: closing %d connection(s)", len(self.ws_app.connections))
        self.ws_server.close()
        self.ms_server.close()
        self.ws_app.close_all(disconnect.SHUTDOWN)
        if not self.ws_app.wait_closed(self.config.shutdown_timeout):
            logger.warning(
                "%d connection(s) still open after %.1f s; dropping them",
                len(self.ws_app.connections),
                self.config.shutdown_timeout,
            )
        self.ws_server.stop(timeout=0)
        self.ms_server.stop(timeout=1.0)
        if self.redis_source is not None:
            self.redis_source.close()
        self.node.close()
        logger.info("stopped")


def stream_limits(config: Config) -> StreamLimits:
    """The broker's history settings from ``config``."""
    return StreamLimits(
        config.history_memory_max_bytes,
        config.history_meta_ttl,
        config.idempotency_window,
        config.idempotency_max_keys,
    )
