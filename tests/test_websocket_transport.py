"""The WebSocket transport after the handshake: pipelined bytes, ordering, idle cost."""

from __future__ import annotations

import gc
import json
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import gevent
import gevent.socket
import greenlet
import pytest

from rocketws.config import Address, Config
from rocketws.core import framing
from rocketws.process.server import Server
from rocketws.transports.websocket.connection import (
    KEEPALIVE_COUNT,
    KEEPALIVE_IDLE,
    KEEPALIVE_INTERVAL,
    rest_of_partial_frame,
)

from .support import ServerProcess, StartServer, wait_in_hub
from .wsraw import PING, PONG, RawWebSocket, client_frame, close_payload, rpc_frame


def test_frames_pipelined_with_the_upgrade_request_are_served(server: ServerProcess) -> None:
    # Three small frames fit in the handshake's read buffer; the big one does not, so it
    # is split between that buffer and the socket.
    big = {"jsonrpc": "2.0", "method": "ping", "id": 4, "pad": "x" * 2000}
    pipelined = (
        rpc_frame("ping", 1)
        + rpc_frame("subscribe", 2, ["piped"])
        + rpc_frame("ping", 3)
        + client_frame(0x1, json.dumps(big).encode())
    )
    raw = RawWebSocket(server.ws_port, pipelined=pipelined)
    replies = [json.loads(raw.read_frame()[1]) for _ in range(4)]
    assert [r["id"] for r in replies] == [1, 2, 3, 4]
    assert replies[1]["result"] == {"channel": "piped", "subscribed": True}
    assert replies[3]["error"]["code"] == -32600  # "pad" is not a request member
    raw.close()


def test_reply_is_sent_before_the_pong_of_a_later_ping(server: ServerProcess) -> None:
    raw = RawWebSocket(server.ws_port)
    raw.sock.sendall(rpc_frame("ping", 1) + client_frame(0x9, b"after"))
    opcode, payload = raw.read_frame()
    assert opcode == 0x1 and json.loads(payload)["id"] == 1
    assert raw.read_frame() == (0xA, b"after")
    raw.close()


def test_requests_before_a_close_frame_are_answered_first(server: ServerProcess) -> None:
    raw = RawWebSocket(server.ws_port)
    raw.sock.sendall(rpc_frame("ping", 1) + rpc_frame("ping", 2) + client_frame(0x8, close_payload(1000)))
    texts, code, _reason = raw.read_until_close()
    assert [json.loads(t)["id"] for t in texts] == [1, 2]
    assert code == 1000
    with pytest.raises(EOFError):
        raw.read_frame()  # then the server closes the TCP connection
    raw.close()


def test_bytes_after_a_bad_frame_do_not_lose_the_close_frame(server: ServerProcess) -> None:
    raw = RawWebSocket(server.ws_port)
    raw.sock.sendall(client_frame(0x1, b"{}", mask=False) + rpc_frame("ping", 1) * 50)
    assert raw.read_until_close()[1] == 1002
    raw.close()


# -- in process: what an idle connection holds ------------------------------------------


def _live_greenlets() -> int:
    # type(), not isinstance(): a dead weakref proxy in gc's list raises on isinstance
    return sum(1 for obj in gc.get_objects() if issubclass(type(obj), greenlet.greenlet) and obj)


def gevent_client(port: int) -> RawWebSocket:
    """A raw client on gevent sockets, so it can share the hub with an in-process server."""
    return RawWebSocket(port, connect=gevent.socket.create_connection)


def test_idle_subscribed_connections_hold_no_greenlet() -> None:
    server = Server(Config(websocket=Address("127.0.0.1", 0), backend=Address("127.0.0.1", 0)))
    server.start()
    clients: list[RawWebSocket] = []
    try:
        # The hub and the resolver's thread (used by the client's create_connection) start
        # on first use; pywsgi's start used to start them. They are not per connection.
        gevent.socket.getaddrinfo("127.0.0.1", server.ws_server.server_port)
        before = _live_greenlets()
        for i in range(20):
            client = gevent_client(server.ws_server.server_port)
            assert client.call("subscribe", i, ["idle"])["result"]["subscribed"] is True
            clients.append(client)
        # the handshake and dispatch greenlets end; the connections stay open and served
        wait_in_hub(lambda: _live_greenlets() <= before)
        assert server.hub.count("idle") == 20
        assert clients[7].call("ping", 99)["result"] == "pong"
        wait_in_hub(lambda: _live_greenlets() <= before)
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
        client = gevent_client(server.ws_server.server_port)
        assert client.call("ping", 1)["result"] == "pong"
        (conn,) = server.ws_app.connections
        assert isinstance(conn.sock, socket.socket)  # plain TCP: no TlsStream
        assert conn.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        client.sock.close()
    finally:
        assert server.ws_app.wait_closed(10)
        server.shutdown()


def test_refused_frame_drops_tcp_once_the_close_frame_is_written(start_server: StartServer) -> None:
    # RFC 6455 7.1.7: after failing the connection the server reads nothing more, so it
    # does not wait CLOSE_TIMEOUT for a close frame the client will never be asked for.
    srv = start_server(ROCKETWS_CLOSE_TIMEOUT="60")
    raw = RawWebSocket(srv.ws_port, timeout=10.0)
    started = time.monotonic()
    raw.sock.sendall(client_frame(0x1, b"{}", mask=False))
    assert raw.read_until_close()[1] == 1002
    with pytest.raises(EOFError):
        raw.read_frame()  # the server closes TCP without waiting for our close frame
    assert time.monotonic() - started < 10.0
    raw.close()


@contextmanager
def in_process_server(**settings: Any) -> Iterator[Server]:
    """A Server in this process on ephemeral ports; every connection closed at the end."""
    server = Server(Config(websocket=Address("127.0.0.1", 0), backend=Address("127.0.0.1", 0), **settings))
    server.start()
    try:
        yield server
    finally:
        assert server.ws_app.wait_closed(10)
        server.shutdown()


def accepted_socket(server: Server) -> tuple[RawWebSocket, socket.socket]:
    """A connected client and the server's socket for it."""
    client = gevent_client(server.ws_server.server_port)
    assert client.call("ping", 1)["result"] == "pong"
    (conn,) = server.ws_app.connections
    assert isinstance(conn.sock, socket.socket)  # plain TCP: no TlsStream
    return client, conn.sock


def test_websocket_sockets_have_tcp_keepalive_and_the_send_buffer_cap() -> None:
    """A peer that vanishes is found by the kernel even with pings off (SO_KEEPALIVE)."""
    with in_process_server(send_buffer=32768) as server:
        client, sock = accepted_socket(server)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == KEEPALIVE_IDLE == 60
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == KEEPALIVE_INTERVAL == 10
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == KEEPALIVE_COUNT == 6
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) == 2 * 32768  # Linux doubles it
        client.sock.close()


def test_send_buffer_is_left_to_the_kernel_by_default() -> None:
    with in_process_server() as server:
        client, sock = accepted_socket(server)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) != 2 * 32768
        client.sock.close()


# -- liveness: the one sweep, pings, the pong and write timeouts -------------------------


def test_one_sweep_timer_runs_while_connections_are_open() -> None:
    with in_process_server(ping_interval=0.2) as server:
        sweeper = server.ws_app.sweeper
        assert not sweeper.running  # no connection, no timer
        clients = [gevent_client(server.ws_server.server_port) for _ in range(5)]
        for i, client in enumerate(clients):
            assert client.call("ping", i)["result"] == "pong"
        assert sweeper.running
        start = sweeper.tick
        wait_in_hub(lambda: sweeper.tick >= start + 3, what="three sweeps")
        # each quiet client got a ping from that one timer, none timed out
        for client in clients:
            assert client.read_frame() == (PING, b"")
            client.send_frame(PONG, b"")
        assert len(server.ws_app.connections) == 5
        for client in clients:
            client.sock.close()
        wait_in_hub(lambda: not sweeper.running, what="the sweep to stop with the last connection")


def _frames(*sizes: int) -> bytes:
    return b"".join(framing.text_frame(b"x" * size) for size in sizes)


@pytest.mark.parametrize(
    ("written", "rest"),
    [
        (0, b""),  # nothing written: at a boundary
        (2 + 10, b""),  # the first frame whole
        (5, b"x" * 7),  # into the 10-byte frame: its last 7 bytes
        (12 + 1, b"\x7e\x00\xc8" + b"x" * 200),  # 126: a 16-bit length (5.2)
        (12 + 204 + 10 + 70000 - 1, b"x"),  # 127: a 64-bit length
    ],
)
def test_rest_of_partial_frame_finds_the_frame_in_flight(written: int, rest: bytes) -> None:
    taken = _frames(10, 200, 70000, 3)
    assert rest_of_partial_frame(memoryview(taken)[written:]) == rest
    assert rest_of_partial_frame(taken) == b""  # the whole take, nothing of it written
    # a view of a view (two partial writes) still knows where it started
    assert (
        rest_of_partial_frame(memoryview(memoryview(taken)[1:])[written - 1 :] if written else taken) == rest
    )
