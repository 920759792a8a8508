"""Connection authentication: the ``connect`` and ``refresh`` client methods, without I/O.

``Authenticator`` is the process's policy: a ``TokenVerifier`` (JWT), a ``ConnectProxy``
(the application's HTTP endpoint, an adapter), both, or neither (anonymous mode: every
connection is accepted at once, as RocketWS 0.2 did).  A connection is reached through
``Admission``, which the transport's connection implements: it says whether the
connection still waits for ``connect`` and takes the outcome.

``connect {token?, name?, version?}``: with a token and a verifier, the token decides;
without a token, the connect proxy (when configured) decides from the params and the
upgrade request's forwarded headers.  Success accepts the connection (CONNECTING ->
OPEN) and subscribes it to the identity's channels; failure answers a JSON-RPC error and
then closes with the error's ``Disconnect``.  ``refresh {token}`` replaces the expiry
(same ``sub`` only); a refused refresh is an error answer only, the connection keeps
its current deadline.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol
from urllib.parse import unquote

from rocketws.core import disconnect
from rocketws.core.codes import RpcCode
from rocketws.core.exceptions import AuthFailed, InvalidParams, RpcError
from rocketws.core.handshake import Request
from rocketws.core.tokens import ANONYMOUS, Identity, TokenVerifier, invalid

logger = logging.getLogger(__name__)

__all__ = ["Admission", "Authenticator", "ConnectProxy", "Identity", "upgrade_token"]


class ConnectProxy(Protocol):
    """Asks the application who a connection is (``transports.websocket.connect_proxy``)."""

    def __call__(self, params: dict[str, Any], headers: Sequence[tuple[str, str]]) -> Identity:
        """POST ``params`` with ``headers``; the identity in the answer.

        Raises AuthFailed: refused (CONNECT_REFUSED or the application's disconnect) or
        unavailable (timeout, down, a malformed answer).  May block the calling greenlet,
        never the others.
        """
        ...


class Admission(Protocol):
    """One connection as authentication sees it (the transport's ``Connection``)."""

    @property
    def connecting(self) -> bool:
        """True until the connection is accepted (and while it is not closing)."""
        ...

    def upgrade_headers(self) -> Sequence[tuple[str, str]]:
        """The upgrade request's headers kept for the connect proxy (empty once accepted)."""
        ...

    def admit(self, identity: Identity) -> list[str]:
        """Accept with ``identity``: CONNECTING -> OPEN, subscribe its channels; return the
        channels subscribed.  Raises AuthFailed, with nothing changed, when the node refuses
        the user (``Node.admit_user``: MAX_CONNECTIONS_PER_USER)."""
        ...

    def refuse(self, why: disconnect.Disconnect) -> None:
        """Close with ``why`` once the current answer is queued."""
        ...

    def extend(self, expires_at: float) -> None:
        """A refresh moved the expiry to ``expires_at`` (Unix time, 0 = never)."""
        ...


def upgrade_token(request: Request) -> str | None:
    """A token sent with the upgrade: ``Authorization: Bearer <token>`` (RFC 6750 2.1),
    else the ``token`` query parameter (2.3; it leaks into proxy logs), else None."""
    for value in request.values("authorization"):
        scheme, _, credentials = value.partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
    _, query_given, query = request.target.partition("?")
    if query_given:
        for part in query.split("&"):
            name, _, value = part.partition("=")
            if name == "token" and value:
                return unquote(value)
    return None


def _text_param(name: str, value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise InvalidParams({"param": name, "reason": f"{name} must be a string"})


class Authenticator:
    """How this process authenticates connections (see the module docstring).

    ``ping_interval`` is reported in ``connect``'s answer; ``clock`` gives Unix time.
    """

    def __init__(
        self,
        verifier: TokenVerifier | None = None,
        proxy: ConnectProxy | None = None,
        *,
        forward_headers: Sequence[str] = (),
        ping_interval: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.verifier = verifier
        self.proxy = proxy
        self.forward_headers = tuple(h.lower() for h in forward_headers) if proxy is not None else ()
        self.ping_interval = ping_interval
        self.clock = clock
        # Whether connections must ``connect`` before anything else (else anonymous mode).
        self.required = verifier is not None or proxy is not None

    def describe(self) -> str:
        """One line for the startup log."""
        if not self.required:
            return "anonymous mode: connections are accepted without authentication"
        ways = []
        if self.verifier is not None:
            ways.append("JWT (" + ", ".join(self.verifier.algorithms()) + ")")
        if self.proxy is not None:
            ways.append("connect proxy")
        return "connections must authenticate: " + " or ".join(ways)

    # -- the upgrade ----------------------------------------------------------------

    def at_upgrade(self, request: Request) -> tuple[str | None, tuple[tuple[str, str], ...]]:
        """(a token sent with the upgrade, the headers to keep for the connect proxy)."""
        token = upgrade_token(request) if self.verifier is not None else None
        forward = self.forward_headers
        kept = tuple((k, v) for k, v in request.headers if k in forward) if forward else ()
        return token, kept

    # -- methods ----------------------------------------------------------------------

    def connect(
        self, link: Admission | None, session_id: str, token: Any, name: Any, version: Any
    ) -> dict[str, Any]:
        """The ``connect`` method.  Raises AuthFailed (and asks ``link`` to close after
        the answer), or RpcError (-32015 when connected already; -32602 bad params)."""
        if link is None or not self.required:
            return self._answer(session_id, ANONYMOUS, [])
        if not link.connecting:
            raise AuthFailed(RpcCode.ALREADY_CONNECTED, "this connection is connected already")
        if name is not None or version is not None:  # connect {token} sends neither
            name, version = _text_param("name", name), _text_param("version", version)
        try:
            if token is not None and self.verifier is not None:
                identity = self.verifier.verify(token)
            else:
                identity = self._ask_proxy(link, token, session_id, name, version)
            channels = link.admit(identity)
        except AuthFailed as exc:
            if exc.close is not None:
                link.refuse(exc.close)
            raise
        return self._answer(session_id, identity, channels)

    def accept_upgrade_token(self, token: str) -> Identity:
        """Verify a token sent with the upgrade.  Raises AuthFailed."""
        assert self.verifier is not None
        return self.verifier.verify(token)

    def _ask_proxy(
        self, link: Admission, token: Any, session_id: str, name: str | None, version: str | None
    ) -> Identity:
        """The connect proxy's identity for a ``connect`` without a token to verify."""
        if self.proxy is not None:
            params = {"client": session_id, "name": name, "version": version}
            if token is not None:
                params["token"] = _text_param("token", token)
            given = {k: v for k, v in params.items() if v is not None}
            identity = self.proxy(given, link.upgrade_headers())
            # The proxy may block (a token check never does): closed meanwhile?
            if not link.connecting:  # (the connect timeout, a shutdown)
                raise RpcError({"reason": "the connection is closing"}, code=RpcCode.NOT_CONNECTED)
            return identity
        raise invalid("missing token")

    def refresh(self, link: Admission | None, user: str, token: Any) -> dict[str, Any]:
        """The ``refresh`` method: a new token for the same user moves the expiry."""
        if link is None or not self.required:
            return {"expires_in": None}
        if link.connecting:
            raise RpcError({"reason": "call connect first"}, code=RpcCode.NOT_CONNECTED)
        if self.verifier is None:
            raise invalid("refresh needs a token, and no token key is configured")
        if token is None:
            raise InvalidParams({"param": "token", "reason": "missing required param 'token'"})
        identity = self.verifier.verify(token)
        if identity.user != user:
            raise invalid("the token's sub is not this connection's user")
        link.extend(identity.expires_at)
        return {"expires_in": self._expires_in(identity.expires_at)}

    def _answer(self, session_id: str, identity: Identity, channels: list[str]) -> dict[str, Any]:
        return {
            "client": session_id,
            "user": identity.user,
            "expires_in": self._expires_in(identity.expires_at),
            "ping_interval": self.ping_interval,
            "channels": channels,
        }

    def _expires_in(self, expires_at: float) -> int | None:
        if not expires_at:
            return None
        return max(0, math.ceil(expires_at - self.clock()))


ANONYMOUS_MODE = Authenticator()
