"""The WebSocket transport after the handshake: pipelined bytes, ordering, idle cost."""

from __future__ import annotations

import base64
import gc
import json
import os
import socket
import struct
import time

import gevent
import gevent.socket
import greenlet
import pytest

from rocketws.config import Address, Config
from rocketws.process.server import Server

from .support import ServerProcess
from .test_framing import client_frame
from .wsraw import RawWebSocket


def rpc(method: str, rid: int, params: object = None) -> bytes:
    req: dict[str, object] = {"jsonrpc": "2.0", "method": method, "id": rid}
    if params is not None:
        req["params"] = params
    return client_frame(0x1, json.dumps(req).encode())


def test_frames_pipelined_with_the_upgrade_request_are_served(server: ServerProcess) -> None:
    # Three small frames fit in the handshake's read buffer; the big one does not, so it
    # is split between that buffer and the socket.
    big = {"jsonrpc": "2.0", "method": "ping", "id": 4, "pad": "x" * 2000}
    pipelined = (rpc("ping", 1) + rpc("subscribe", 2, ["piped"]) + rpc("ping", 3)
                 + client_frame(0x1, json.dumps(big).encode()))
    raw = RawWebSocket(server.ws_port, pipelined=pipelined)
    replies = [json.loads(raw.read_frame()[1]) for _ in range(4)]
    assert [r["id"] for r in replies] == [1, 2, 3, 4]
    assert replies[1]["result"] == {"channel": "piped", "subscribed": True}
    assert replies[3]["error"]["code"] == -32600  # "pad" is not a request member
    raw.close()


def test_reply_is_sent_before_the_pong_of_a_later_ping(server: ServerProcess) -> None:
    raw = RawWebSocket(server.ws_port)
    raw.sock.sendall(rpc("ping", 1) + client_frame(0x9, b"after"))
    opcode, payload = raw.read_frame()
    assert opcode == 0x1 and json.loads(payload)["id"] == 1
    assert raw.read_frame() == (0xA, b"after")
    raw.close()


def test_requests_before_a_close_frame_are_answered_first(server: ServerProcess) -> None:
    raw = RawWebSocket(server.ws_port)
    raw.sock.sendall(rpc("ping", 1) + rpc("ping", 2) + client_frame(0x8, struct.pack("!H", 1000)))
    texts, code, _reason = raw.read_until_close()
    assert [json.loads(t)["id"] for t in texts] == [1, 2]
    assert code == 1000
    with pytest.raises(EOFError):
        raw.read_frame()  # then the server closes the TCP connection
    raw.close()


def test_bytes_after_a_bad_frame_do_not_lose_the_close_frame(server: ServerProcess) -> None:
    raw = RawWebSocket(server.ws_port)
    raw.sock.sendall(client_frame(0x1, b"{}", mask=False) + rpc("ping", 1) * 50)
    assert raw.read_until_close()[1] == 1002
    raw.close()


# -- in process: what an idle connection holds ------------------------------------------


def _live_greenlets() -> int:
    # type(), not isinstance(): a dead weakref proxy in gc's list raises on isinstance
    return sum(1 for obj in gc.get_objects() if issubclass(type(obj), greenlet.greenlet) and obj)


def _poll(predicate, timeout: float = 10.0) -> None:
    """Let the hub run until ``predicate()`` holds (fails after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        gevent.sleep(0.001)


class GeventClient:
    """A raw client on gevent sockets, so it can share the hub with an in-process server."""

    def __init__(self, port: int) -> None:
        self.sock = gevent.socket.create_connection(("127.0.0.1", port), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        self.buf = b""
        head = self._until(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head

    def _until(self, marker: bytes) -> bytes:
        while marker not in self.buf:
            chunk = self.sock.recv(65536)
            assert chunk, "connection closed"
            self.buf += chunk
        head, _, self.buf = self.buf.partition(marker)
        return head

    def call(self, method: str, rid: int, params: object = None) -> dict:
        self.sock.sendall(rpc(method, rid, params))
        while len(self.buf) < 2 or len(self.buf) < 2 + (self.buf[1] & 0x7F):
            chunk = self.sock.recv(65536)
            assert chunk, "connection closed"
            self.buf += chunk
        n = self.buf[1] & 0x7F
        assert n < 126, "test replies are short"
        payload, self.buf = self.buf[2:2 + n], self.buf[2 + n:]
        return json.loads(payload)


def test_idle_subscribed_connections_hold_no_greenlet() -> None:
    server = Server(Config(websocket=Address("127.0.0.1", 0), backend=Address("127.0.0.1", 0)))
    server.start()
    clients: list[GeventClient] = []
    try:
        before = _live_greenlets()
        for i in range(20):
            client = GeventClient(server.ws_server.server_port)
            assert client.call("subscribe", i, ["idle"])["result"]["subscribed"] is True
            clients.append(client)
        # the handshake and dispatch greenlets end; the connections stay open and served
        _poll(lambda: _live_greenlets() <= before)
        assert server.hub.count("idle") == 20
        assert clients[7].call("ping", 99)["result"] == "pong"
        _poll(lambda: _live_greenlets() <= before)
    finally:
        for client in clients:
            client.sock.close()
        assert server.ws_app.wait_closed(10)
        server.shutdown()
    assert server.hub.connections == 0 and server.hub.count("idle") == 0


def test_websocket_sockets_have_tcp_nodelay() -> None:
    """No Nagle delay on pushes (the MessagesSource's is shown by test_e2e_http's
    keep-alive latency test)."""
    server = Server(Config(websocket=Address("127.0.0.1", 0), backend=Address("127.0.0.1", 0)))
    server.start()
    try:
        client = GeventClient(server.ws_server.server_port)
        assert client.call("ping", 1)["result"] == "pong"
        (conn,) = server.ws_app.connections
        assert conn.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        client.sock.close()
    finally:
        assert server.ws_app.wait_closed(10)
        server.shutdown()
