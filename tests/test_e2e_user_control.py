"""End to end: a backend's `refresh {user, expire_at?}` moving the expiry of a user's
token-connected connections (memory broker, and across two server processes on Redis),
and the per-user connection limit (AUTH["MAX_CONNECTIONS_PER_USER"]: -32016, close 4013).

Real `manage.py runserver` processes, real sockets, a real redis-server; tokens are HS256
made here with PyJWT as tests/test_e2e_auth.py makes them.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt
import pytest
from websockets.sync.client import ClientConnection

from .redis_fixtures import RedisServer
from .support import ServerProcess, StartServer, recv_json, request, wait_until, ws_connect
from .test_e2e_auth import closed_code

SECRET = "user-control-secret-for-tests-" + "q" * 16
GRACE = 1.0  # AUTH["REFRESH_GRACE"] of these servers


def token(sub: str, ttl: float = 3600) -> str:
    return jwt.encode({"sub": sub, "exp": int(time.time() + ttl)}, SECRET, algorithm="HS256")


def connected(srv: ServerProcess, user: str, ttl: float = 3600) -> ClientConnection:
    ws = ws_connect(srv.ws_url)
    resp = request(ws, "connect", {"token": token(user, ttl)})
    assert resp.get("result", {}).get("user") == user, resp
    return ws


def refresh_required(ws: ClientConnection, timeout: float = 10.0) -> dict[str, Any]:
    push: dict[str, Any] = recv_json(ws, timeout)
    assert push["method"] == "refresh_required" and "id" not in push, push
    return push


def quiet(ws: ClientConnection, timeout: float) -> None:
    """Nothing arrives for ``timeout`` seconds and the connection still answers."""
    with pytest.raises(TimeoutError):
        ws.recv(timeout=timeout)
    assert request(ws, "ping")["result"] == "pong"


def auth_env(**more: str) -> dict[str, str]:
    return {"ROCKETWS_TOKEN_HMAC_SECRET": SECRET, "ROCKETWS_REFRESH_GRACE": str(GRACE), **more}


# -- backend refresh ----------------------------------------------------------------------


def test_backend_refresh_sets_the_expiry_and_the_expired_path_follows(start_server: StartServer) -> None:
    srv = start_server(**auth_env())
    with connected(srv, "alice") as a1, connected(srv, "alice") as a2, connected(srv, "bob") as bob:
        expire_at = int(time.time()) + 3  # within the 5 s notice: refresh_required at once
        reply = srv.result("refresh", {"user": "alice", "expire_at": expire_at})
        assert reply == {"user": "alice", "expire_at": expire_at, "reached": 2}
        for ws in (a1, a2):
            assert 0 <= refresh_required(ws)["params"]["expires_in"] <= 3
        # a1 refreshes with a new token and stays; a2 does not and is closed after the grace
        assert 3590 <= request(a1, "refresh", {"token": token("alice")})["result"]["expires_in"] <= 3600
        assert closed_code(a2) == (4011, "token expired, no refresh")  # reconnect allowed
        assert time.time() >= expire_at + GRACE
        assert request(a1, "ping")["result"] == "pong"
        assert request(bob, "ping")["result"] == "pong"  # another user: untouched
    srv.assert_no_traceback()


def test_backend_refresh_without_expire_at_means_never(start_server: StartServer) -> None:
    srv = start_server(**auth_env())
    exp = int(time.time()) + 2
    with connected(srv, "carol", ttl=2) as ws:
        refresh_required(ws)  # the token's own exp is near
        assert srv.result("refresh", {"user": "carol"})["reached"] == 1
        # the token's exp + grace passes: no close, no further refresh_required
        wait_until(lambda: time.time() > exp + GRACE + 1, timeout=10, what="the token's grace to pass")
        quiet(ws, 0.5)
        # a later expiry far ahead re-arms nothing soon either
        assert srv.result("refresh", {"user": "carol", "expire_at": time.time() + 3600})["reached"] == 1
        quiet(ws, 0.5)


def test_backend_refresh_in_the_past_expires_now_then_closes_after_the_grace(
    start_server: StartServer,
) -> None:
    srv = start_server(**auth_env())
    with connected(srv, "dan") as ws, connected(srv, "dan") as other:
        asked = time.time()
        assert srv.result("refresh", {"user": "dan", "expire_at": 0})["reached"] == 2
        assert refresh_required(ws)["params"]["expires_in"] == 0
        assert refresh_required(other)["params"]["expires_in"] == 0
        assert closed_code(ws) == (4011, "token expired, no refresh")
        assert time.time() >= asked + GRACE  # the grace counts from the refresh, not from 1970
        assert closed_code(other)[0] == 4011
    assert srv.result("refresh", {"user": "dan", "expire_at": 0})["reached"] == 0  # gone


def test_backend_refresh_reaches_a_users_connections_on_both_nodes(
    redis_server: RedisServer, start_server: StartServer
) -> None:
    broker = f"{redis_server.url}?prefix=uctl-{uuid.uuid4().hex[:8]}:&presence_ttl=1"
    a, b = (start_server(**auth_env(ROCKETWS_BROKER=broker)) for _ in range(2))
    with connected(a, "erin") as on_a, connected(b, "erin") as on_b, connected(a, "fay") as fay:
        # expire_at far ahead, asked on node b: both connections reached, nothing pushed
        assert b.result("refresh", {"user": "erin", "expire_at": time.time() + 3600})["reached"] == 2
        quiet(on_a, 0.3)
        # in the past, asked on node a: refresh_required on both nodes, then 4011 on both
        assert a.result("refresh", {"user": "erin", "expire_at": time.time() - 60})["reached"] == 2
        for ws in (on_a, on_b):
            assert refresh_required(ws)["params"]["expires_in"] == 0
        assert closed_code(on_a)[0] == closed_code(on_b)[0] == 4011
        assert request(fay, "ping")["result"] == "pong"
    for srv in (a, b):
        srv.assert_no_traceback()


# -- per-user connection limit ------------------------------------------------------------


def test_per_user_limit_refuses_one_more_then_frees_a_slot_on_disconnect(start_server: StartServer) -> None:
    srv = start_server(**auth_env(ROCKETWS_MAX_CONNECTIONS_PER_USER="2"))
    first, second = connected(srv, "gus"), connected(srv, "gus")
    with ws_connect(srv.ws_url) as third:
        resp = request(third, "connect", {"token": token("gus")})
        assert resp["error"]["code"] == -32016 and resp["error"]["message"] == "Too many connections"
        assert "MAX_CONNECTIONS_PER_USER" in resp["error"]["data"]["reason"]
        assert closed_code(third) == (4013, "too many connections for this user")  # reconnect allowed
    # with the token in the query string: closed with 4013 at once
    with ws_connect(srv.ws_url + "?token=" + token("gus")) as by_query:
        assert closed_code(by_query) == (4013, "too many connections for this user")
    # other users have their own slots; anonymous connections are not limited by it
    others = [connected(srv, "hal") for _ in range(2)] + [connected(srv, "") for _ in range(4)]
    # the slot frees once a connection of gus has closed
    first.close()
    wait_until(lambda: srv.result("total_subscribers") == 1 + 2 + 4, timeout=10, what="the closed one to go")
    with connected(srv, "gus") as again:
        assert request(again, "ping")["result"] == "pong"
        assert request(second, "ping")["result"] == "pong"
    for ws in [second, *others]:
        ws.close()
    srv.assert_no_traceback()


def test_per_user_limit_is_off_by_default(start_server: StartServer) -> None:
    srv = start_server(**auth_env())
    clients = [connected(srv, "ivy") for _ in range(5)]
    for ws in clients:
        assert request(ws, "ping")["result"] == "pong"
        ws.close()
