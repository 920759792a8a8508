"""Server-side control by user over real sockets: backend HTTP in, WebSocket pushes and
close frames out, across two nodes on a real Redis and on the memory broker.

Until the connection-authentication work adds `connect`, no wire call sets a user, so
these nodes run in this process and the test identifies their sessions with
``Node.identify`` (what `connect` will call); everything else is real: sockets, HTTP,
WebSocket frames, Redis.  The wire shapes are also checked against a server process.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import gevent
import gevent.socket

from rocketws.config import Address, Config
from rocketws.process.server import Server

from .redis_fixtures import RedisServer
from .support import ServerProcess, wait_in_hub
from .wsraw import CLOSE, RawWebSocket


@contextmanager
def _nodes(broker: str, n: int) -> Iterator[list[Server]]:
    servers = []
    try:
        for _ in range(n):
            config = Config(websocket=Address("127.0.0.1", 0), backend=Address("127.0.0.1", 0), broker=broker)
            server = Server(config)
            server.start()
            servers.append(server)
        yield servers
    finally:
        for server in servers:
            server.ws_app.wait_closed(10)
            server.shutdown()


def _post(server: Server, method: str, params: dict[str, Any]) -> Any:
    """One JSON-RPC call to ``server``'s MessagesSource over a gevent socket."""
    body = json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": 1}).encode()
    sock = gevent.socket.create_connection(("127.0.0.1", server.ms_server.server_port), timeout=10)
    try:
        sock.sendall(
            b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
            % (len(body), body)
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    finally:
        sock.close()
    head, _, payload = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    return json.loads(payload)


def _client(server: Server, user: str) -> RawWebSocket:
    """A connected raw WebSocket whose session the node knows as ``user``."""
    before = {c.session.id for c in server.ws_app.connections}
    client = RawWebSocket(server.ws_server.server_port, connect=gevent.socket.create_connection)
    assert client.call("ping", 1)["result"] == "pong"
    (conn,) = [c for c in server.ws_app.connections if c.session.id not in before]
    server.node.identify(conn.session, user)
    return client


def _push(client: RawWebSocket) -> Any:
    opcode, payload = client.read_frame()
    assert opcode == 1, (opcode, payload)
    return json.loads(payload)


def _control_across(servers: list[Server]) -> None:
    a, b = servers[0], servers[-1]
    alice = [_client(a, "alice"), _client(b, "alice")]
    bob = _client(b, "bob")
    anonymous = _client(a, "")

    reply = _post(a, "subscribe", {"user": "alice", "channel": "news"})
    assert reply["result"] == {"user": "alice", "channel": "news", "reached": 2}
    for client in alice:
        assert _push(client) == {"jsonrpc": "2.0", "method": "subscribed", "params": {"channel": "news"}}
    wait_in_hub(lambda: _post(b, "total_subscribers", {"channel": "news"})["result"] == 2)
    assert _post(b, "emit", {"channel": "news", "data": 1})["result"]["delivered"] == 2
    for client in alice:
        assert _push(client)["params"]["data"] == 1

    assert _post(b, "refresh", {"user": "alice", "expire_at": 2000000000})["result"]["reached"] == 2
    protocols = [c.protocol for s in servers for c in s.ws_app.connections if c.session.user == "alice"]
    assert len(protocols) == 2 and {p.expires_at for p in protocols} == {2000000000}

    reply = _post(b, "unsubscribe", {"user": "alice", "channel": "news"})
    assert reply["result"] == {"user": "alice", "channel": "news", "reached": 2}
    for client in alice:
        assert _push(client)["method"] == "unsubscribed"

    assert _post(b, "disconnect", {"user": "alice"})["result"] == {"user": "alice", "reached": 2}
    for client in alice:
        texts, code, reason = client.read_until_close()
        assert (texts, code, reason) == ([], 4504, "disconnected by the server")
        client.close()
    # bob and the anonymous connection are untouched; an unknown user reaches nobody
    assert _post(a, "disconnect", {"user": "carol", "code": 4100})["result"]["reached"] == 0
    for client in (bob, anonymous):
        assert client.call("ping", 2)["result"] == "pong"
        client.close()


def test_control_by_user_across_two_nodes_on_redis(redis_server: RedisServer) -> None:
    broker = f"{redis_server.url}?prefix=ctl-{uuid.uuid4().hex[:8]}:"
    with _nodes(broker, 2) as servers:
        _control_across(servers)


def test_control_by_user_on_the_memory_broker() -> None:
    with _nodes("memory", 1) as servers:
        _control_across(servers)


def test_control_methods_wire_shapes_on_a_server_process(server: ServerProcess) -> None:
    assert server.result("disconnect", {"user": "nobody"}) == {"user": "nobody", "reached": 0}
    assert server.result("subscribe", {"user": "nobody", "channel": "c"}) == {
        "user": "nobody",
        "channel": "c",
        "reached": 0,
    }
    assert server.result("refresh", {"user": "nobody", "expire_at": None})["reached"] == 0
    error = server.call("disconnect", {"user": "nobody", "code": 1000})["error"]
    assert error["code"] == -32602 and error["data"]["param"] == "code"
    assert server.call("disconnect", {"code": 4000})["error"]["code"] == -32602  # user required
    server.assert_no_traceback()


def test_close_frame_opcode_constant() -> None:
    assert CLOSE == 0x8
