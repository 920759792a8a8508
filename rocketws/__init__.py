"""RocketWS: a real-time push server (WebSocket channels, JSON-RPC 2.0 backends).

The backend client is ``rocketws.client.Client`` (imported on its own: it needs requests).
"""

from __future__ import annotations

from rocketws.core.codes import CloseCode, RpcCode
from rocketws.core.exceptions import (
    BrokerUnavailable,
    ConfigError,
    InvalidParams,
    LimitExceeded,
    NotAllowed,
    NotSubscribed,
    RocketWSError,
    RpcError,
)

__version__ = "0.3.0"

__all__ = [
    "__version__",
    "CloseCode",
    "RpcCode",
    "RocketWSError",
    "ConfigError",
    "RpcError",
    "InvalidParams",
    "NotSubscribed",
    "BrokerUnavailable",
    "LimitExceeded",
    "NotAllowed",
]
