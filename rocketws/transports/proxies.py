"""The RPC, subscribe and publish proxies' I/O: HTTP to the application, in-process handlers.

HTTP goes through ``geventhttpclient``: it is written for gevent (its sockets are
``gevent.socket`` whether or not the process is monkey-patched, like the rest of
RocketWS's I/O), parses with a C parser, and keeps a keep-alive connection pool per
application host, so a call reuses an idle connection instead of a TCP (and TLS)
handshake per call.  Each call runs in the greenlet that makes it: a slow application
holds back that greenlet only.  Limits: ``PROXY["TIMEOUT"]`` for the whole call
(connect, send, answer), ``MAX_RESPONSE_SIZE`` bytes of answer, ``MAX_IN_FLIGHT`` calls
per process (which is also each pool's size, so a call never queues for a connection).
What the request and answer are is ``core.proxy``'s; docs/operations.md#proxies.
"""

from __future__ import annotations

import importlib
import itertools
import logging
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import gevent
from gevent import ssl as gssl
from geventhttpclient import HTTPClient
from geventhttpclient.header import Headers
from geventhttpclient.response import HTTPConnectionClosed, HTTPParseError

from rocketws.config import Config
from rocketws.core import jsonrpc
from rocketws.core.codes import RpcCode
from rocketws.core.exceptions import ApplicationError, ConfigError, RpcError
from rocketws.core.handshake import Request
from rocketws.core.proxy import (
    CONTEXT_HEADERS,
    CallContext,
    Routes,
    application_error,
    context_headers,
    failure,
    read_answer,
    request_body,
)

logger = logging.getLogger("rocketws.proxy")
handler_logger = logging.getLogger("rocketws.handlers")
"""Where an in-process handler's own exceptions are logged (the application's bugs)."""

USER_AGENT = "rocketws-proxy"
Observer = Callable[[str, str, float, "int | None"], None]
"""Told after every proxied call: (kind ``rpc``/``subscribe``/``publish``, the route's
pattern or the kind, seconds, the JSON-RPC error code or None).  Labels are bounded: the
configured patterns, never the client's method names.  Must not block."""
_READ_SIZE = 65536


def load_handler(path: str) -> Callable[[Any, CallContext], Any]:
    """The callable ``module:function`` names (imported now).  Raises ConfigError."""
    module_name, _, attribute = path.partition(":")
    try:
        found: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            found = getattr(found, part)
    except Exception as exc:  # the application's import failed: say why, at start
        raise ConfigError(
            'PROXY["RPC"] handler', path, f"cannot import: {type(exc).__name__}: {exc}"
        ) from None
    if not callable(found):
        raise ConfigError('PROXY["RPC"] handler', path, "is not callable")
    handler: Callable[[Any, CallContext], Any] = found
    return handler


def _tls_context(cafile: str | None = None) -> gssl.SSLContext:
    """The system's trusted CAs (as Python's default context has them, so a private CA
    installed in the system store is trusted), plus the ``cafile`` geventhttpclient gives
    (certifi's bundle); hostnames checked."""
    context = gssl.create_default_context()
    if cafile:
        context.load_verify_locations(cafile=cafile)
    return context


class HttpPoster:
    """POSTs JSON-RPC requests to application URLs over keep-alive connection pools."""

    def __init__(self, timeout: float, pool_size: int, max_response_size: int) -> None:
        self.timeout = timeout
        self.pool_size = pool_size
        self.max_response_size = max_response_size
        self._clients: dict[tuple[str, str, int], HTTPClient] = {}

    def _client(self, scheme: str, host: str, port: int) -> HTTPClient:
        key = (scheme, host, port)
        client = self._clients.get(key)
        if client is None:
            client = self._clients[key] = HTTPClient(
                host,
                port,
                ssl=scheme == "https",
                concurrency=self.pool_size,
                ssl_context_factory=_tls_context if scheme == "https" else None,
                connection_timeout=self.timeout,
                network_timeout=self.timeout,
                headers={"User-Agent": USER_AGENT},
            )
        return client

    def post(
        self, url: str, body: bytes, headers: Sequence[tuple[str, str]], method: str
    ) -> tuple[int, bytes]:
        """(status, body) of the application's answer.  Raises RpcError: -32041 (down,
        refused, reset), -32042 (timeout), -32043 (not HTTP, too large)."""
        parts = urlsplit(url)
        tls = parts.scheme == "https"
        client = self._client(parts.scheme, parts.hostname or "127.0.0.1", parts.port or (443 if tls else 80))
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        fields = Headers()
        fields.add("Content-Type", "application/json")
        for name, value in headers:
            fields.add(name, value)
        # One deadline for the whole call.  geventhttpclient closes a connection whose
        # answer was not read to the end (should_close), so a late answer never reaches
        # the next call; its sockets also time out after the same seconds.  (The one
        # moment a deadline would cost a pool slot: a ``sendall`` blocked for the whole
        # timeout, which a request of at most MAX_MESSAGE_SIZE does not do while the
        # peer's TCP window is open.)
        deadline = gevent.Timeout(self.timeout)
        deadline.start()
        try:
            response = client.request("POST", target, body=body, headers=fields)
            try:
                return response.status_code, self._read(response, method)
            finally:
                response.release()  # back to the pool when read to the end, else closed
        except gevent.Timeout as exc:
            if exc is not deadline:
                raise
            raise self._timeout(method) from None
        except TimeoutError:  # a socket timeout (the same number of seconds)
            raise self._timeout(method) from None
        except HTTPConnectionClosed:
            reason = "the application closed the connection before answering"
            raise failure(RpcCode.APPLICATION_UNAVAILABLE, reason, method) from None
        except HTTPParseError:
            raise failure(RpcCode.BAD_APPLICATION_ANSWER, "the answer is not HTTP", method) from None
        except OSError as exc:
            reason = f"unreachable: {exc.strerror or type(exc).__name__}"
            raise failure(RpcCode.APPLICATION_UNAVAILABLE, reason, method) from None
        except RuntimeError as exc:  # geventhttpclient: a pool closed at shutdown, a host not resolved
            raise failure(RpcCode.APPLICATION_UNAVAILABLE, f"unreachable: {exc}", method) from None
        except ValueError:  # geventhttpclient refused a forwarded header's value
            reason = "a forwarded header's value cannot be sent"
            raise failure(RpcCode.APPLICATION_UNAVAILABLE, reason, method) from None
        finally:
            deadline.close()

    def _timeout(self, method: str) -> RpcError:
        return failure(RpcCode.APPLICATION_TIMEOUT, f"no answer within {self.timeout:g} s", method)

    def _read(self, response: Any, method: str) -> bytes:
        limit = self.max_response_size
        length = response.content_length
        if length is not None and length > limit:
            raise failure(RpcCode.BAD_APPLICATION_ANSWER, f"the answer is over {limit} bytes", method)
        body = bytearray()
        while chunk := response.read(_READ_SIZE):
            body += chunk
            if len(body) > limit:
                raise failure(RpcCode.BAD_APPLICATION_ANSWER, f"the answer is over {limit} bytes", method)
        return bytes(body)

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()


class Proxies:
    """The process's proxies (``core.proxy.Proxies``): routes, handlers, the HTTP poster
    and the per-process in-flight limit."""

    def __init__(self, config: Config) -> None:
        """Imports every in-process handler now.  Raises ConfigError."""
        self.routes = Routes(config.rpc_proxy_routes, config.rpc_proxy_url)
        self.subscribe_url = config.subscribe_proxy_url
        self.publish_url = config.publish_proxy_url
        self.timeout = config.proxy_timeout
        self.max_in_flight = config.proxy_max_in_flight
        self.forward_headers = frozenset(h.lower() for h in config.proxy_headers)
        self.static_headers = tuple(config.proxy_static_headers.items())
        self.handlers = {
            r.handler: load_handler(r.handler) for r in config.rpc_proxy_routes if r.handler is not None
        }
        self.http = HttpPoster(
            config.proxy_timeout, config.proxy_max_in_flight, config.proxy_max_response_size
        )
        self.in_flight = 0
        self._ids = itertools.count(1)
        self.observer: Observer | None = None  # e.g. the metrics: set once, before serving

    @property
    def configured(self) -> bool:
        """Whether any proxy is (else connections keep no upgrade headers for them)."""
        return bool(self.routes) or self.subscribe_url is not None or self.publish_url is not None

    def at_upgrade(self, request: Request) -> tuple[tuple[str, str], ...]:
        """The upgrade request's headers to forward with this connection's calls."""
        if not self.configured or not self.forward_headers:
            return ()
        names = self.forward_headers
        return tuple((k, v) for k, v in request.headers if k in names and k not in CONTEXT_HEADERS)

    def describe(self) -> str:
        """One line for the startup log."""
        parts = []
        if self.routes:
            parts.append("rpc " + ", ".join(self.routes.patterns()))
        if self.subscribe_url is not None:
            parts.append("subscribe")
        if self.publish_url is not None:
            parts.append("publish")
        return "proxies: " + ("; ".join(parts) or "none")

    @contextmanager
    def _slot(self, method: str, kind: str = "rpc", pattern: str = "") -> Iterator[None]:
        """One of MAX_IN_FLIGHT, for one call; ``observer`` is told how it went."""
        if self.in_flight >= self.max_in_flight:
            if self.observer is not None:
                self.observer(kind, pattern or kind, 0.0, RpcCode.TOO_MANY_CALLS)
            raise RpcError(
                {
                    "method": method,
                    "limit": "max_in_flight",
                    "max": self.max_in_flight,
                    "reason": "too many proxied calls waiting in this process",
                },
                code=RpcCode.TOO_MANY_CALLS,
            )
        self.in_flight += 1
        started = time.perf_counter()
        code: int | None = None
        try:
            yield
        except RpcError as exc:
            code = exc.code
            raise
        finally:
            self.in_flight -= 1
            if self.observer is not None:
                self.observer(kind, pattern or kind, time.perf_counter() - started, code)

    # -- core.proxy.Proxies ------------------------------------------------------------

    def call(self, context: CallContext, params: Any) -> Any:
        route = self.routes.route(context.method)
        with self._slot(context.method, "rpc", route.pattern):
            if route.handler is not None:
                return self._run_handler(route.handler, context, params)
            assert route.url is not None
            return self._post(route.url, context.method, params, context)

    def subscribe(self, context: CallContext, channel: str) -> None:
        if self.subscribe_url is None:
            raise failure(RpcCode.APPLICATION_UNAVAILABLE, "no subscribe proxy is configured", "subscribe")
        with self._slot("subscribe", "subscribe"):
            self._post(self.subscribe_url, "subscribe", {"channel": channel}, context)

    def publish(self, context: CallContext, channel: str, data: Any) -> Any:
        if self.publish_url is None:
            raise failure(RpcCode.APPLICATION_UNAVAILABLE, "no publish proxy is configured", "publish")
        with self._slot("publish", "publish"):
            result = self._post(self.publish_url, "publish", {"channel": channel, "data": data}, context)
        if isinstance(result, dict) and "data" in result:
            return result["data"]  # the application replaced the data
        return data

    # -- the two kinds of target -----------------------------------------------------------

    def _post(self, url: str, method: str, params: Any, context: CallContext) -> Any:
        request_id = next(self._ids)
        try:
            headers = context_headers(context)
            headers += self.static_headers
            status, body = self.http.post(url, request_body(request_id, method, params), headers, method)
            if status == 200:
                return read_answer(body, request_id, method)
            try:  # a JSON-RPC error sent with another status is still the application's error
                read_answer(body, request_id, method)
            except ApplicationError:
                raise
            except RpcError as exc:
                if exc.code == RpcCode.APPLICATION_ERROR:
                    raise
            raise failure(RpcCode.APPLICATION_UNAVAILABLE, f"the application answered HTTP {status}", method)
        except RpcError as exc:
            if exc.code in _LOGGED:
                logger.warning("proxy %s, %s for %s: %s", url, method, context.client, _reason(exc))
            raise

    def _run_handler(self, path: str, context: CallContext, params: Any) -> Any:
        func = self.handlers[path]
        worker = gevent.spawn(_guarded, func, params, context)
        try:
            ok, value = worker.get(timeout=self.timeout)
        except gevent.Timeout:
            worker.kill(block=False)  # a handler that never yields cannot be stopped: documented
            handler_logger.warning(
                "handler %s for %s: no answer within %g s", path, context.method, self.timeout
            )
            raise failure(
                RpcCode.APPLICATION_TIMEOUT, f"no answer within {self.timeout:g} s", context.method
            ) from None
        if ok:
            try:
                jsonrpc.dumps(value)
            except (TypeError, ValueError):
                handler_logger.warning(
                    "handler %s for %s returned a value JSON cannot hold", path, context.method
                )
                raise failure(
                    RpcCode.BAD_APPLICATION_ANSWER, "the handler's result is not JSON", context.method
                ) from None
            return value
        if isinstance(value, ApplicationError):
            raise application_error(value.code, value.message, value.data)
        handler_logger.warning(
            "handler %s for %s raised %s: %s (at %s); DEBUG logs the traceback",
            path,
            context.method,
            type(value).__name__,
            value,
            _where(value),
        )
        handler_logger.debug("handler %s traceback", path, exc_info=value)
        raise failure(RpcCode.APPLICATION_ERROR, f"the handler raised {type(value).__name__}", context.method)

    def close(self) -> None:
        self.http.close()


_LOGGED = frozenset(
    (
        RpcCode.APPLICATION_UNAVAILABLE,
        RpcCode.APPLICATION_TIMEOUT,
        RpcCode.BAD_APPLICATION_ANSWER,
    )
)


def _reason(exc: RpcError) -> str:
    data = exc.data
    return str(data.get("reason")) if isinstance(data, dict) else exc.message


def _guarded(func: Callable[[Any, CallContext], Any], params: Any, context: CallContext) -> tuple[bool, Any]:
    """Run a handler; never raises (gevent would print the traceback of a greenlet that
    dies with an exception): (True, result) or (False, the exception)."""
    try:
        return True, func(params, context)
    except Exception as exc:  # the application's mistake, reported by _run_handler
        return False, exc


def _where(exc: BaseException) -> str:
    """The innermost frame of ``exc``: ``file:line in function``."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "unknown"
    last = frames[-1]
    return f"{last.filename}:{last.lineno} in {last.name}"
