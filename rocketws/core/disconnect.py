"""Why a WebSocket connection ends: a close code, its reason and whether to reconnect.

A ``Disconnect`` travels as one value from the decision to the close frame.  Clients act
on the code alone, by this rule (docs/protocol.md has the table):

- 4000-4499: the server ended the connection; reconnecting (with backoff) is fine;
- 4500-4999: do not reconnect with the same credentials (a rejected or expired token,
  a ban): get new ones first, or stop;
- 1000-2999 (RFC 6455 7.4.1): as ``RFC_RECONNECT`` says; a code the server never sends
  (1006, abnormal closure seen by a client) means reconnect.
"""

from __future__ import annotations

from dataclasses import dataclass

from rocketws.core.codes import CloseCode

RECONNECT_RANGE = range(4000, 4500)
NO_RECONNECT_RANGE = range(4500, 5000)

# RFC 6455 codes: True where reconnecting can help (the server went away or failed), False
# where the client itself broke the protocol or closed on purpose.
RFC_RECONNECT: dict[int, bool] = {
    CloseCode.NORMAL: False,
    CloseCode.GOING_AWAY: True,
    CloseCode.PROTOCOL_ERROR: False,
    CloseCode.UNSUPPORTED_DATA: False,
    1006: True,
    CloseCode.INVALID_PAYLOAD: False,
    CloseCode.POLICY_VIOLATION: False,
    CloseCode.MESSAGE_TOO_BIG: False,
    CloseCode.INTERNAL_ERROR: True,
    1012: True,  # service restart
    1013: True,  # try again later
}


def reconnect_allowed(code: int) -> bool:
    """Whether a client may reconnect (with the same credentials) after ``code``."""
    if code in NO_RECONNECT_RANGE:
        return False
    if code in RECONNECT_RANGE:
        return True
    return RFC_RECONNECT.get(code, True)


@dataclass(frozen=True, slots=True)
class Disconnect:
    """A close code, its reason, and whether the client may reconnect.

    ``reconnect`` must agree with the range rule for 4000-4999 (checked on creation).
    """

    code: int
    reason: str
    reconnect: bool

    def __post_init__(self) -> None:
        if self.code in RECONNECT_RANGE or self.code in NO_RECONNECT_RANGE:
            if self.reconnect != reconnect_allowed(self.code):
                raise ValueError(f"close code {self.code} breaks the reconnect range rule")

    @classmethod
    def for_code(cls, code: int, reason: str) -> Disconnect:
        """The Disconnect for ``code``, with ``reconnect`` by the rule."""
        return cls(code, reason, reconnect_allowed(code))

    def __str__(self) -> str:
        return f"{self.code} {self.reason}".rstrip()


# What the server sends, by cause.  ``reason`` goes into the close frame (<= 123 bytes).
NORMAL = Disconnect(CloseCode.NORMAL, "", reconnect=False)
SHUTDOWN = Disconnect(CloseCode.GOING_AWAY, "server shutting down", reconnect=True)
INTERNAL_ERROR = Disconnect(CloseCode.INTERNAL_ERROR, "internal error", reconnect=True)
SLOW_CONSUMER = Disconnect(CloseCode.SLOW_CONSUMER, "slow consumer", reconnect=True)
# The socket took no bytes for WRITE_TIMEOUT while frames were pending: a slow consumer too.
WRITE_STALLED = Disconnect(CloseCode.SLOW_CONSUMER, "write timeout", reconnect=True)
# Our ping (RFC 6455 5.5.2) got no pong, nor any other frame, within PONG_TIMEOUT.
NO_PONG = Disconnect(CloseCode.NO_PONG, "no pong", reconnect=True)

# Connection authentication (docs/protocol.md#authentication).
CONNECT_TIMEOUT = Disconnect(CloseCode.CONNECT_TIMEOUT, "connect timeout", reconnect=True)
EXPIRED = Disconnect(CloseCode.EXPIRED, "token expired, no refresh", reconnect=True)
AUTH_UNAVAILABLE = Disconnect(CloseCode.AUTH_UNAVAILABLE, "authentication unavailable", reconnect=True)
TOO_MANY_CONNECTIONS = Disconnect(
    CloseCode.TOO_MANY_CONNECTIONS, "too many connections for this user", reconnect=True
)
INVALID_TOKEN = Disconnect(CloseCode.INVALID_TOKEN, "invalid token", reconnect=False)
TOKEN_EXPIRED = Disconnect(CloseCode.TOKEN_EXPIRED, "token expired", reconnect=False)
CONNECT_REFUSED = Disconnect(CloseCode.CONNECT_REFUSED, "connect refused", reconnect=False)
# Kept sending requests over the rate limit after RATE_REFUSALS refusals.
RATE_LIMITED = Disconnect(CloseCode.RATE_LIMITED, "too many requests", reconnect=True)
# This node saw a gap in a history channel's offsets (its Redis subscription broke, Redis
# lost the stream): reconnect and subscribe with `recover` (docs/protocol.md#recovery).
INSUFFICIENT_STATE = Disconnect(CloseCode.INSUFFICIENT_STATE, "insufficient state", reconnect=True)
# A backend's `disconnect {user}` without a code: do not come back with the same token.
BY_SERVER = Disconnect(CloseCode.DISCONNECTED, "disconnected by the server", reconnect=False)

ALL: tuple[Disconnect, ...] = (
    NORMAL,
    SHUTDOWN,
    INTERNAL_ERROR,
    SLOW_CONSUMER,
    WRITE_STALLED,
    NO_PONG,
    CONNECT_TIMEOUT,
    EXPIRED,
    AUTH_UNAVAILABLE,
    TOO_MANY_CONNECTIONS,
    RATE_LIMITED,
    INSUFFICIENT_STATE,
    INVALID_TOKEN,
    TOKEN_EXPIRED,
    CONNECT_REFUSED,
    BY_SERVER,
)
