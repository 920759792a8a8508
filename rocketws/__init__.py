"""RocketWS: a real-time push server (WebSocket channels, JSON-RPC 2.0 backends)."""

from __future__ import annotations

__version__ = "0.3.0"

__all__ = ["__version__"]
