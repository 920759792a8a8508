"""Connection authentication's adapters: the Authenticator built from the Config (key
files read here), and the connect proxy.

The connect proxy POSTs through the same HTTP client as the RPC, subscribe and publish
proxies (``transports.proxies.HttpPoster``: geventhttpclient, gevent sockets whether or
not the process is monkey-patched, keep-alive connection pools), so a slow application
blocks only the connection's own dispatcher greenlet and a reconnect storm after a
restart reuses connections instead of opening one per ``connect``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rocketws.config import Config
from rocketws.core import disconnect
from rocketws.core.auth import Authenticator
from rocketws.core.codes import RpcCode
from rocketws.core.connection import AuthTiming
from rocketws.core.disconnect import Disconnect
from rocketws.core.exceptions import AuthFailed, ConfigError, RpcError
from rocketws.core.tokens import Identity, TokenVerifier, identity_from_claims
from rocketws.transports.proxies import HttpPoster, Observer

logger = logging.getLogger("rocketws.auth")

MAX_ANSWER_BYTES = 64 * 1024  # a connect proxy answer larger than this is refused
POOL_SIZE = 100  # keep-alive connections to the connect proxy, at most


def _read(name: str, path: str | None) -> str | None:
    if path is None:
        return None
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise ConfigError(name, path, f"cannot read: {exc.strerror or exc}") from None


def build_authenticator(config: Config) -> Authenticator:
    """The Authenticator the settings describe (anonymous mode when none are set).
    Raises ConfigError for an unusable key file (never echoing a secret)."""
    verifier = None
    public = _read('AUTH["TOKEN_PUBLIC_KEY"]', config.token_public_key)
    jwks = _read('AUTH["TOKEN_JWKS_FILE"]', config.token_jwks_file)
    if config.token_hmac_secret or public or jwks:
        try:
            verifier = TokenVerifier(
                hmac_secret=config.token_hmac_secret,
                public_key_pem=public,
                jwks=jwks,
                audience=config.token_audience,
                issuer=config.token_issuer,
                require_exp=config.token_require_exp,
            )
        except ValueError as exc:
            raise ConfigError("AUTH token key", "...", str(exc)) from None
    proxy = None
    if config.connect_proxy_url is not None:
        proxy = HttpConnectProxy(config.connect_proxy_url, config.connect_proxy_timeout)
    return Authenticator(
        verifier,
        proxy,
        forward_headers=config.connect_proxy_headers,
        ping_interval=config.ping_interval,
    )


def auth_timing(config: Config) -> AuthTiming:
    return AuthTiming(connect_timeout=config.connect_timeout, refresh_grace=config.refresh_grace)


def unavailable(reason: str) -> AuthFailed:
    return AuthFailed(RpcCode.AUTH_UNAVAILABLE, reason, disconnect.AUTH_UNAVAILABLE)


class HttpConnectProxy:
    """POSTs ``connect``'s params (JSON) with the forwarded upgrade headers to ``url``.

    The application answers 200 with one of (docs/security.md, "Connect proxy"):
    ``{"result": {"user", "info"?, "meta"?, "channels"?, "expire_at"?}}`` to accept,
    ``{"error": {"message"?}}`` to refuse (-32013, close 4503), or
    ``{"disconnect": {"code": 4000-4999, "reason"}}`` to refuse with that close.
    Anything else, another status, a timeout or a refused TCP connection: -32014 and
    close 4012 (reconnect allowed), logged as a WARNING without a traceback.
    """

    def __init__(self, url: str, timeout: float) -> None:
        self.url = url
        self.timeout = timeout
        self.http = HttpPoster(timeout, POOL_SIZE, MAX_ANSWER_BYTES)
        self.observer: Observer | None = None  # the metrics (kind and pattern "connect")

    def __call__(self, params: dict[str, Any], headers: Sequence[tuple[str, str]]) -> Identity:
        if self.observer is None:
            return self._ask(params, headers)
        started = time.perf_counter()
        code: int | None = None
        try:
            return self._ask(params, headers)
        except AuthFailed as exc:
            code = exc.code
            raise
        finally:
            self.observer("connect", "connect", time.perf_counter() - started, code)

    def _ask(self, params: dict[str, Any], headers: Sequence[tuple[str, str]]) -> Identity:
        try:
            status, body = self._post(json.dumps(params).encode(), headers)
        except AuthFailed as exc:
            logger.warning("connect proxy %s: %s", self.url, exc.reason)
            raise
        if status != 200:
            logger.warning("connect proxy %s answered HTTP %d", self.url, status)
            raise unavailable(f"connect proxy answered HTTP {status}")
        try:
            return self._outcome(json.loads(body))
        except AuthFailed as exc:
            if exc.code == RpcCode.AUTH_UNAVAILABLE:
                logger.warning("connect proxy %s: %s", self.url, exc.reason)
            raise
        except ValueError:
            logger.warning("connect proxy %s answered something that is not JSON", self.url)
            raise unavailable("connect proxy answer is not JSON") from None

    def _outcome(self, answer: Any) -> Identity:
        if not isinstance(answer, dict):
            raise unavailable("connect proxy answer is not a JSON object")
        if isinstance(answer.get("result"), dict):
            result = answer["result"]
            if not isinstance(result.get("user", ""), str):
                raise unavailable("connect proxy result: user must be a string")
            try:
                return identity_from_claims(result, user_key="user", exp_key="expire_at")
            except AuthFailed as exc:
                raise unavailable(f"connect proxy result: {exc.reason}") from None
        if isinstance(answer.get("error"), dict):
            message = answer["error"].get("message")
            reason = message if isinstance(message, str) and message else "connect refused"
            raise AuthFailed(RpcCode.CONNECT_REFUSED, reason[:200], disconnect.CONNECT_REFUSED)
        if isinstance(answer.get("disconnect"), dict):
            code, reason = answer["disconnect"].get("code"), answer["disconnect"].get("reason", "")
            if isinstance(code, bool) or not isinstance(code, int) or not 4000 <= code <= 4999:
                raise unavailable("connect proxy disconnect: code must be 4000-4999")
            if not isinstance(reason, str) or len(reason.encode()) > 123:
                raise unavailable("connect proxy disconnect: reason must be a string of <= 123 bytes")
            raise AuthFailed(
                RpcCode.CONNECT_REFUSED, reason or "connect refused", Disconnect.for_code(code, reason)
            )
        raise unavailable('connect proxy answer has no "result", "error" or "disconnect"')

    def _post(self, body: bytes, headers: Sequence[tuple[str, str]]) -> tuple[int, bytes]:
        try:
            return self.http.post(self.url, body, headers, "connect")
        except RpcError as exc:
            reason = exc.data.get("reason") if isinstance(exc.data, dict) else None
            raise unavailable(f"connect proxy: {reason or exc.message}") from None
