"""RocketWS exceptions.

::

    RocketWSError                 root of everything RocketWS raises on purpose
    ├── ConfigError               a setting or command-line value is invalid
    ├── RpcError                  a JSON-RPC error answered to the caller (has .code)
    │   ├── InvalidParams         -32602
    │   ├── NotSubscribed         -32001
    │   ├── BrokerUnavailable     -32002
    │   ├── LimitExceeded         -32003
    │   ├── NotAllowed            -32005 (a channel namespace rule refuses it)
    │   ├── PermissionDenied      -32006 (refused for this connection's user)
    │   ├── TooManyRequests       -32029 (over the per-connection rate limit)
    │   ├── AuthFailed            -32010..-32015 (connect/refresh refused; may carry a close)
    │   └── ApplicationError      an error an RPC/subscribe/publish proxy's application chose
    └── WebSocketClosing          the connection must close (has .close_code)
        ├── PeerClosed            the client sent a close frame
        └── ProtocolViolation     the client broke RFC 6455 or a limit

"The peer sent something bad" (RpcError, ProtocolViolation) is kept apart from our own
bugs, which are any other exception.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rocketws.core.codes import RPC_MESSAGES, CloseCode, RpcCode

if TYPE_CHECKING:
    from rocketws.core.disconnect import Disconnect


class RocketWSError(Exception):
    """Root of the RocketWS exception tree."""


class ConfigError(RocketWSError):
    """A setting, environment variable or flag has an invalid value."""

    def __init__(self, name: str, value: object, reason: str) -> None:
        super().__init__(name, value, reason)
        self.name, self.value, self.reason = name, value, reason

    def __str__(self) -> str:
        return f"invalid {self.name}={self.value!r}: {self.reason}"


class RpcError(RocketWSError):
    """A JSON-RPC error response: ``code``, ``message`` and a ``data`` object."""

    code: int = RpcCode.INTERNAL_ERROR

    def __init__(self, data: dict[str, Any] | None = None, *, code: int | None = None) -> None:
        super().__init__(data)
        if code is not None:
            self.code = code
        self.data = data

    @property
    def message(self) -> str:
        return RPC_MESSAGES.get(self.code, "Server error")

    def __str__(self) -> str:
        return f"{self.code} {self.message}: {self.data}"


class InvalidParams(RpcError):
    code = RpcCode.INVALID_PARAMS


class NotSubscribed(RpcError):
    code = RpcCode.NOT_SUBSCRIBED


class BrokerUnavailable(RpcError):
    code = RpcCode.BROKER_UNAVAILABLE


class LimitExceeded(RpcError):
    code = RpcCode.LIMIT_EXCEEDED


class NotAllowed(RpcError):
    code = RpcCode.NOT_ALLOWED


class PermissionDenied(RpcError):
    code = RpcCode.PERMISSION_DENIED


class TooManyRequests(RpcError):
    code = RpcCode.TOO_MANY_REQUESTS


class AuthFailed(RpcError):
    """Connection authentication failed: the JSON-RPC error to answer and, when the
    connection must end after that answer, the ``Disconnect`` to close it with.

    ``data["reason"]`` says what was wrong; it never holds the token or a secret.
    """

    def __init__(self, code: int, reason: str, close: Disconnect | None = None) -> None:
        super().__init__({"reason": reason}, code=code)
        self.reason = reason
        self.close = close


class ApplicationError(RpcError):
    """An error the application behind a proxy chose (``core.proxy.application_error``):
    its own ``code``, ``message`` and ``data`` (any JSON value), answered as given."""

    data: Any

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(None, code=code)
        self.data = data
        self._message = message

    @property
    def message(self) -> str:
        return self._message


class WebSocketClosing(RocketWSError):
    """The WebSocket must be closed with ``close_code`` and ``reason``."""

    close_code: int = CloseCode.NORMAL

    def __init__(self, reason: str = "", close_code: int | None = None) -> None:
        super().__init__(reason)
        if close_code is not None:
            self.close_code = close_code
        self.reason = reason

    def __str__(self) -> str:
        return f"close {self.close_code}: {self.reason}"


class PeerClosed(WebSocketClosing):
    """The client sent a close frame (``close_code`` is the code it sent, or 1000)."""


class ProtocolViolation(WebSocketClosing):
    """The client broke the WebSocket protocol or a limit."""

    close_code = CloseCode.PROTOCOL_ERROR
