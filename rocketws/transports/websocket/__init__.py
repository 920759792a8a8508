"""The WebSocket transport: the upgrade (``handshake``), each connection's I/O
(``connection``) and the endpoint that holds them (``app``)."""

from __future__ import annotations

from rocketws.transports.websocket.app import WebSocketApp
from rocketws.transports.websocket.connection import Connection, Flusher
from rocketws.transports.websocket.handshake import WebSocketServer

__all__ = ["Connection", "Flusher", "WebSocketServer", "WebSocketApp"]
