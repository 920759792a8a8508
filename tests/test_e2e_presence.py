"""End to end: presence, presence_stats and join/leave against real `manage.py runserver`
processes: one node on the memory broker, two nodes on a real redis-server, and a node
killed with SIGKILL (issue 11, acceptance 4).

Connections authenticate with HS256 tokens made here with PyJWT, carrying `info`.
"""

from __future__ import annotations

import json
import signal
import socket
import struct
import time
import uuid
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from websockets.sync.client import ClientConnection

from .redis_fixtures import RedisServer
from .support import ServerProcess, StartServer, recv_json, request, subscribe, wait_until, ws_connect
from .test_e2e_auth import ProxyApp

SECRET = "presence-secret-for-tests-" + "p" * 16

NAMESPACES = [
    {"name": "room", "presence": True, "join_leave": True},
    {"name": "lobby", "presence": True, "allow_presence": "authenticated"},
    {"name": "ops", "presence": True, "allow_presence": "nobody"},
    {"name": "vip", "presence": True, "allow_subscribe": "token"},
    {"name": "plain"},
]
ENV = {"ROCKETWS_TOKEN_HMAC_SECRET": SECRET, "ROCKETWS_NAMESPACES": json.dumps(NAMESPACES)}


def token(sub: str, **claims: Any) -> str:
    return jwt.encode({"sub": sub, "exp": int(time.time() + 3600), **claims}, SECRET, algorithm="HS256")


def connected(srv: ServerProcess, user: str, **claims: Any) -> tuple[ClientConnection, str]:
    """A connection that called `connect` with a token for ``user``; (it, its client id)."""
    ws = ws_connect(srv.ws_url)
    answer = request(ws, "connect", {"token": token(user, **claims)})["result"]
    assert answer["user"] == user
    return ws, answer["client"]


def error(
    ws_or_srv: ClientConnection | ServerProcess, method: str, params: Any
) -> tuple[int, dict[str, Any]]:
    if isinstance(ws_or_srv, ServerProcess):
        resp = ws_or_srv.call(method, params)
    else:
        resp = request(ws_or_srv, method, params)
    assert "error" in resp, resp
    return resp["error"]["code"], resp["error"]["data"]


def push(ws: ClientConnection, timeout: float = 5.0) -> dict[str, Any]:
    msg: dict[str, Any] = recv_json(ws, timeout)
    assert "method" in msg and "id" not in msg, f"expected a push, got {msg}"
    return msg


def entry(client: str, user: str, info: Any = None, chan_info: Any = None) -> dict[str, Any]:
    return {"client": client, "user": user, "info": info, "chan_info": chan_info}


def reset(ws: ClientConnection) -> None:
    """Drop the TCP connection with a reset (no close frame, no FIN)."""
    sock = ws.socket
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@pytest.fixture(scope="module")
def srv() -> Iterator[ServerProcess]:
    server = ServerProcess(env=ENV).start()
    yield server
    server.kill()


# -- one node, memory broker -------------------------------------------------------------


def test_presence_lists_subscribers_with_token_info_on_both_endpoints(srv: ServerProcess) -> None:
    alice, alice_id = connected(srv, "alice", info={"name": "Alice", "avatar": "a.png"})
    bob, bob_id = connected(srv, "bob")
    with alice, bob:
        channel = f"room:{uuid.uuid4().hex[:6]}"
        subscribe(alice, channel)
        subscribe(bob, channel)
        assert push(alice)["method"] == "join"
        expected = {
            alice_id: entry(alice_id, "alice", {"name": "Alice", "avatar": "a.png"}),
            bob_id: entry(bob_id, "bob"),
        }
        assert request(bob, "presence", {"channel": channel})["result"] == {
            "channel": channel,
            "clients": expected,
        }
        assert srv.result("presence", {"channel": channel}) == {"channel": channel, "clients": expected}
        stats = {"channel": channel, "num_clients": 2, "num_users": 2}
        assert request(alice, "presence_stats", [channel])["result"] == stats
        assert srv.result("presence_stats", {"channel": channel}) == stats
        assert "127.0.0.1" not in json.dumps(expected)  # never an address


def test_presence_stats_counts_users_once_and_anonymous_as_clients(srv: ServerProcess) -> None:
    channel = f"room:{uuid.uuid4().hex[:6]}"
    one, _ = connected(srv, "carol")
    two, _ = connected(srv, "carol")
    anon, _ = connected(srv, "")
    with one, two, anon:
        for ws in (one, two, anon):
            subscribe(ws, channel)
        assert srv.result("presence_stats", {"channel": channel}) == {
            "channel": channel,
            "num_clients": 3,
            "num_users": 1,
        }


def test_join_and_leave_pushes_on_subscribe_unsubscribe_and_reset(srv: ServerProcess) -> None:
    channel = f"room:{uuid.uuid4().hex[:6]}"
    alice, alice_id = connected(srv, "alice", info={"n": 1})
    bob, bob_id = connected(srv, "bob", info={"n": 2})
    with alice, bob:
        subscribe(alice, channel)
        subscribe(bob, channel)
        assert push(alice) == {
            "jsonrpc": "2.0",
            "method": "join",
            "params": {"channel": channel, **entry(bob_id, "bob", {"n": 2})},
        }
        assert request(bob, "unsubscribe", {"channel": channel})["result"]["subscribed"] is False
        assert push(alice) == {
            "jsonrpc": "2.0",
            "method": "leave",
            "params": {"channel": channel, **entry(bob_id, "bob", {"n": 2})},
        }
        subscribe(bob, channel)
        assert push(alice)["method"] == "join"
        reset(bob)  # a reset, not a clean close: the server still announces the leave
        assert push(alice)["params"] == {"channel": channel, **entry(bob_id, "bob", {"n": 2})}
        assert list(srv.result("presence", {"channel": channel})["clients"]) == [alice_id]
        assert request(alice, "ping")["result"] == "pong"  # no push for alice's own moves


def test_server_side_subscriptions_join_and_leave(srv: ServerProcess) -> None:
    channel = f"room:{uuid.uuid4().hex[:6]}"
    alice, _ = connected(srv, "alice")
    with alice:
        subscribe(alice, channel)
        # The token's `channels`: subscribed at connect, announced.
        dan, dan_id = connected(srv, "dan", channels=[channel], info={"from": "token"})
        with dan:
            assert push(alice)["params"] == {"channel": channel, **entry(dan_id, "dan", {"from": "token"})}
            # The backend's unsubscribe/subscribe by user.
            assert srv.result("unsubscribe", {"user": "dan", "channel": channel})["reached"] == 1
            assert push(alice)["method"] == "leave"
            assert srv.result("subscribe", {"user": "dan", "channel": channel})["reached"] == 1
            assert push(alice)["method"] == "join"
            assert dan_id in srv.result("presence", {"channel": channel})["clients"]
            # The backend's disconnect by user.
            assert srv.result("disconnect", {"user": "dan"})["reached"] == 1
            assert push(alice)["params"]["client"] == dan_id
        assert srv.result("presence_stats", {"channel": channel})["num_clients"] == 1


def test_presence_shows_the_subscription_token_info(srv: ServerProcess) -> None:
    channel = f"vip:{uuid.uuid4().hex[:6]}"
    eve, eve_id = connected(srv, "eve", info={"name": "Eve"})
    with eve:
        grant = token("eve", channel=channel, info={"seat": 12})
        assert request(eve, "subscribe", {"channel": channel, "token": grant})["result"]["subscribed"]
        assert request(eve, "presence", {"channel": channel})["result"]["clients"] == {
            eve_id: entry(eve_id, "eve", {"name": "Eve"}, {"seat": 12})
        }


def test_presence_refusals_are_named_errors(srv: ServerProcess) -> None:
    alice, _ = connected(srv, "alice")
    anon, _ = connected(srv, "")
    with alice, anon:
        subscribe(alice, "plain:x")
        code, data = error(alice, "presence", {"channel": "plain:x"})
        assert code == -32005 and data["reason"] == "presence is not enabled in namespace 'plain'"
        code, data = error(srv, "presence_stats", {"channel": "plain:x"})
        assert code == -32005 and data["namespace"] == "plain"
        code, data = error(alice, "presence", {"channel": "room:elsewhere"})
        assert code == -32001 and data["reason"] == "subscribe to the channel first"
        assert request(alice, "presence", {"channel": "lobby:x"})["result"]["clients"] == {}
        code, data = error(anon, "presence_stats", {"channel": "lobby:x"})
        assert code == -32006 and "authenticated" in data["reason"]
        subscribe(alice, "ops:x")
        code, data = error(alice, "presence", {"channel": "ops:x"})
        assert code == -32005 and "backends only" in data["reason"]
        assert len(srv.result("presence", {"channel": "ops:x"})["clients"]) == 1
        code, data = error(alice, "presence", {"channel": ""})
        assert code == -32602 and data["param"] == "channel"


def test_presence_shows_the_connect_proxy_info_never_its_meta(start_server: StartServer) -> None:
    app = ProxyApp()  # answers user erin, info {"name": "Erin"}, meta, channels ["proxy:erin"]
    try:
        namespaces = json.dumps([{"name": "proxy", "presence": True}])
        srv = start_server(ROCKETWS_CONNECT_PROXY_URL=app.url, ROCKETWS_NAMESPACES=namespaces)
        with ws_connect(srv.ws_url, additional_headers={"Cookie": "session=good"}) as ws:
            client = request(ws, "connect")["result"]["client"]
            clients = srv.result("presence", {"channel": "proxy:erin"})["clients"]
            assert clients == {client: entry(client, "erin", {"name": "Erin"})}
            assert "admin" not in json.dumps(clients)  # the proxy's meta is server-only
    finally:
        app.close()


# -- two nodes on Redis --------------------------------------------------------------------


def _cluster(start: StartServer, url: str, **options: str) -> list[ServerProcess]:
    query = "&".join(f"{k}={v}" for k, v in {"prefix": f"pr-{uuid.uuid4().hex[:8]}:", **options}.items())
    return [start(ROCKETWS_BROKER=f"{url}?{query}", **ENV) for _ in range(2)]


def _clients(srv: ServerProcess, channel: str) -> dict[str, Any]:
    clients: dict[str, Any] = srv.result("presence", {"channel": channel})["clients"]
    return clients


def test_presence_and_join_leave_across_two_nodes(
    redis_server: RedisServer, start_server: StartServer
) -> None:
    a, b = _cluster(start_server, redis_server.url)
    channel = "room:cluster"
    on_a, a_id = connected(a, "alice", info={"node": "a"})
    on_b, b_id = connected(b, "bob", info={"node": "b"})
    with on_a, on_b:
        subscribe(on_a, channel)
        subscribe(on_b, channel)
        assert push(on_a)["params"] == {"channel": channel, **entry(b_id, "bob", {"node": "b"})}
        both = {a_id: entry(a_id, "alice", {"node": "a"}), b_id: entry(b_id, "bob", {"node": "b"})}
        # The join is published after the joiner's presence is written: no wait needed.
        assert request(on_a, "presence", {"channel": channel})["result"]["clients"] == both
        assert _clients(b, channel) == both
        assert a.result("presence_stats", {"channel": channel})["num_users"] == 2
        on_b.close()
        leave = push(on_a)
        assert leave["method"] == "leave" and leave["params"]["client"] == b_id
        assert _clients(a, channel) == {a_id: both[a_id]}


def test_node_stopped_with_sigterm_pushes_leaves_and_removes_its_clients_at_once(
    redis_server: RedisServer, start_server: StartServer
) -> None:
    a, b = _cluster(start_server, redis_server.url)  # default expiry: 30 s
    channel = "room:sigterm"
    on_a, a_id = connected(a, "alice")
    on_b, b_id = connected(b, "bob")
    with on_a:
        subscribe(on_a, channel)
        subscribe(on_b, channel)
        assert push(on_a)["method"] == "join"
        assert b.terminate() == 0  # closes bob's connection with 1001, then the broker
        leave = push(on_a)
        assert (leave["method"], leave["params"]["client"]) == ("leave", b_id)
        assert list(_clients(a, channel)) == [a_id]  # removed, not left to expire
        on_b.socket.close()


def test_killed_node_leaves_presence_within_the_expiry(
    redis_server: RedisServer, start_server: StartServer
) -> None:
    """Acceptance 4: SIGKILL a node; its clients leave presence within presence_expiry."""
    expiry = 1.0
    a, b = _cluster(start_server, redis_server.url, presence_heartbeat="0.25", presence_expiry=str(expiry))
    channel = "room:killed"
    on_a, a_id = connected(a, "alice")
    on_b = [connected(b, f"user{i}") for i in range(3)]
    with on_a:
        subscribe(on_a, channel)
        for ws, _ in on_b:
            subscribe(ws, channel)
        assert len(_clients(a, channel)) == 4
        # For twice the expiry, the heartbeat keeps the live node's entries.
        started = time.monotonic()
        while time.monotonic() - started < 2 * expiry:
            assert len(_clients(a, channel)) == 4
        assert b.proc is not None
        b.proc.send_signal(signal.SIGKILL)  # no clean shutdown, no leave, no removal
        killed = time.monotonic()
        wait_until(lambda: list(_clients(a, channel)) == [a_id], timeout=10, interval=0.05)
        gone_after = time.monotonic() - killed
        assert gone_after <= expiry + 0.3, gone_after  # the expiry, plus the polling slack
        assert a.result("presence_stats", {"channel": channel}) == {
            "channel": channel,
            "num_clients": 1,
            "num_users": 1,
        }
        for ws, _ in on_b:
            ws.socket.close()  # its server is gone
