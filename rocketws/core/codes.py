"""Every wire code RocketWS uses, named in one place.

JSON-RPC 2.0 error codes (spec section 5.1): -32700..-32600 are the spec's own;
-32000..-32099 are RocketWS application errors, each sent with a ``data`` object
saying what was wrong.  WebSocket close codes follow RFC 6455 section 7.4.1; 4000-4999
are private-use codes owned by RocketWS.
"""

from __future__ import annotations

from enum import IntEnum


class RpcCode(IntEnum):
    """JSON-RPC error codes."""

    PARSE_ERROR = -32700
    INVALID_REQUEST = -32600
    METHOD_NOT_FOUND = -32601
    INVALID_PARAMS = -32602
    INTERNAL_ERROR = -32603
    # Application errors (-32000..-32099).
    NOT_SUBSCRIBED = -32001
    BROKER_UNAVAILABLE = -32002
    LIMIT_EXCEEDED = -32003
    REQUEST_TOO_LARGE = -32004
    NOT_ALLOWED = -32005  # refused by a namespace rule for everyone (unknown namespace, ...)
    PERMISSION_DENIED = -32006  # refused for this connection's user (docs/security.md)
    # Connection authentication (-32010..-32019; docs/protocol.md#authentication).
    NOT_CONNECTED = -32010  # a method other than connect/ping before connect succeeded
    TOKEN_INVALID = -32011  # bad signature, algorithm, claims, aud/iss, ...
    TOKEN_EXPIRED = -32012  # the token's exp has passed
    CONNECT_REFUSED = -32013  # the connect proxy refused the connection
    AUTH_UNAVAILABLE = -32014  # the connect proxy timed out, is down or answered nonsense
    ALREADY_CONNECTED = -32015  # connect on a connection that is connected already
    TOO_MANY_CONNECTIONS = -32016  # the user has MAX_CONNECTIONS_PER_USER connections already
    # Per-connection command rate limit (WEBSOCKETS["RATE_LIMIT"]).
    TOO_MANY_REQUESTS = -32029
    # MessagesSource: no API key, or a wrong one (HTTP 401).
    UNAUTHORIZED = -32030


RPC_MESSAGES: dict[int, str] = {
    RpcCode.PARSE_ERROR: "Parse error",
    RpcCode.INVALID_REQUEST: "Invalid Request",
    RpcCode.METHOD_NOT_FOUND: "Method not found",
    RpcCode.INVALID_PARAMS: "Invalid params",
    RpcCode.INTERNAL_ERROR: "Internal error",
    RpcCode.NOT_SUBSCRIBED: "Not subscribed",
    RpcCode.BROKER_UNAVAILABLE: "Broker unavailable",
    RpcCode.LIMIT_EXCEEDED: "Limit exceeded",
    RpcCode.REQUEST_TOO_LARGE: "Request too large",
    RpcCode.NOT_ALLOWED: "Not allowed",
    RpcCode.PERMISSION_DENIED: "Permission denied",
    RpcCode.NOT_CONNECTED: "Not connected",
    RpcCode.TOKEN_INVALID: "Invalid token",
    RpcCode.TOKEN_EXPIRED: "Token expired",
    RpcCode.CONNECT_REFUSED: "Connect refused",
    RpcCode.AUTH_UNAVAILABLE: "Authentication unavailable",
    RpcCode.ALREADY_CONNECTED: "Already connected",
    RpcCode.TOO_MANY_CONNECTIONS: "Too many connections",
    RpcCode.TOO_MANY_REQUESTS: "Too many requests",
    RpcCode.UNAUTHORIZED: "Unauthorized",
}


class CloseCode(IntEnum):
    """WebSocket close status codes sent by the server."""

    NORMAL = 1000
    GOING_AWAY = 1001  # server shutting down
    PROTOCOL_ERROR = 1002  # malformed framing
    UNSUPPORTED_DATA = 1003  # binary frames
    INVALID_PAYLOAD = 1007  # text frame that is not UTF-8
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009  # message over the size limit
    INTERNAL_ERROR = 1011
    SLOW_CONSUMER = 4008  # outgoing buffer limit exceeded, or the socket took nothing
    NO_PONG = 4009  # no pong (nor any other frame) in time after our ping
    # Connection authentication (docs/protocol.md#authentication).
    CONNECT_TIMEOUT = 4010  # no successful connect within CONNECT_TIMEOUT
    EXPIRED = 4011  # the token expired and no refresh came within REFRESH_GRACE
    AUTH_UNAVAILABLE = 4012  # the connect proxy timed out, is down or answered nonsense
    TOO_MANY_CONNECTIONS = 4013  # the user has MAX_CONNECTIONS_PER_USER connections already
    INSUFFICIENT_STATE = 4014  # this node missed publications of a channel with history: recover
    RATE_LIMITED = 4029  # kept sending over WEBSOCKETS["RATE_LIMIT"] after refusals
    INVALID_TOKEN = 4501  # do not reconnect with this token
    TOKEN_EXPIRED = 4502  # the token was expired when presented: get a new one
    CONNECT_REFUSED = 4503  # the connect proxy refused these credentials
    DISCONNECTED = 4504  # a backend called `disconnect` for the user (no reconnect)
