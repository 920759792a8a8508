"""End to end: channel namespace options, `#` channels and subscription tokens against a
real `manage.py runserver`, and control by user across two server processes on Redis.

Tokens are HS256, made here with PyJWT as tests/test_e2e_auth.py makes them.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from websockets.sync.client import ClientConnection

from .redis_fixtures import RedisServer
from .support import (
    RUNSERVER_EPHEMERAL,
    ServerProcess,
    StartServer,
    manage,
    recv_json,
    request,
    subscribe,
    ws_connect,
)
from .test_e2e_auth import closed_code

SECRET = "permissions-secret-for-tests-" + "z" * 16

NAMESPACES = [
    {"name": "auth", "allow_subscribe": "authenticated"},
    {"name": "priv", "allow_subscribe": "token", "allow_user_limited_channels": True},
    {"name": "members", "allow_anonymous": False, "allow_user_limited_channels": True},
    {"name": "news", "allow_send_data": "nobody"},
    {"name": "legacy", "allow_send_data": False},
    {"name": "talk", "allow_send_data": "authenticated", "allow_user_limited_channels": True},
    {"name": "room", "channel_regex": "[a-z]{1,5}", "max_subscribers": 2},
    {"name": "open", "allow_user_limited_channels": True},
    {"name": "plain"},
]


def token(sub: str, ttl: float = 3600, **more: Any) -> str:
    return jwt.encode({"sub": sub, "exp": int(time.time() + ttl), **more}, SECRET, algorithm="HS256")


def sub_token(sub: str, channel: str, ttl: float = 3600, **more: Any) -> str:
    return token(sub, ttl, channel=channel, **more)


def connected(srv: ServerProcess, user: str) -> ClientConnection:
    """A connection that called `connect` with a token for ``user`` ("" = anonymous)."""
    ws = ws_connect(srv.ws_url)
    assert request(ws, "connect", {"token": token(user)})["result"]["user"] == user
    return ws


def error(ws: ClientConnection, method: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    resp = request(ws, method, params)
    assert "error" in resp, resp
    return resp["error"]["code"], resp["error"]["data"]


@pytest.fixture(scope="module")
def srv() -> Iterator[ServerProcess]:
    server = ServerProcess(
        env={
            "ROCKETWS_TOKEN_HMAC_SECRET": SECRET,
            "ROCKETWS_NAMESPACES": json.dumps(NAMESPACES),
            "ROCKETWS_ALLOW_UNKNOWN_NAMESPACES": "0",
        }
    ).start()
    yield server
    assert SECRET not in server.log()
    server.kill()


# -- allow_subscribe, allow_anonymous ----------------------------------------------------


def test_authenticated_namespace_refuses_anonymous_and_takes_users(srv: ServerProcess) -> None:
    with connected(srv, "") as anon, connected(srv, "alice") as alice:
        code, data = error(anon, "subscribe", {"channel": "auth:x"})
        assert code == -32006 and data["namespace"] == "auth" and "authenticated" in data["reason"]
        subscribe(alice, "auth:x")


def test_anonymous_off_refuses_anonymous_only(srv: ServerProcess) -> None:
    with connected(srv, "") as anon, connected(srv, "alice") as alice:
        code, data = error(anon, "subscribe", {"channel": "members:lobby"})
        assert code == -32006 and "anonymous" in data["reason"]
        subscribe(alice, "members:lobby")
        subscribe(anon, "open:lobby")  # other namespaces stay open to anonymous connections


def test_unknown_namespace_is_32005_naming_it(srv: ServerProcess) -> None:
    with connected(srv, "alice") as ws:
        code, data = error(ws, "subscribe", {"channel": "nope:x"})
        assert code == -32005 and data["namespace"] == "nope" and "'nope'" in data["reason"]


# -- subscription tokens ----------------------------------------------------------------


def test_token_namespace_needs_a_valid_subscription_token(srv: ServerProcess) -> None:
    with connected(srv, "alice") as ws:
        code, data = error(ws, "subscribe", {"channel": "priv:a"})
        assert code == -32006 and "subscription token is required" in data["reason"]
        ok = request(ws, "subscribe", {"channel": "priv:a", "token": sub_token("alice", "priv:a")})
        assert ok["result"] == {"channel": "priv:a", "subscribed": True}
        srv.call("emit", {"channel": "priv:a", "data": "secret"})
        assert recv_json(ws)["params"]["data"] == "secret"


@pytest.mark.parametrize(
    ("make", "code", "reason_part"),
    [
        (lambda: sub_token("alice", "priv:other"), -32011, "channel"),
        (lambda: sub_token("bob", "priv:a"), -32011, "sub"),
        (lambda: sub_token("alice", "priv:a", ttl=-60), -32012, "expired"),
        (
            lambda: jwt.encode({"sub": "alice", "channel": "priv:a"}, "w" * 40, algorithm="HS256"),
            -32011,
            "Signature",
        ),
        (lambda: token("alice"), -32011, "channel"),  # a connection token is no subscription token
    ],
    ids=["wrong-channel", "wrong-user", "expired", "wrong-key", "connection-token"],
)
def test_bad_subscription_tokens_are_refused_and_the_connection_stays(
    srv: ServerProcess, make: Any, code: int, reason_part: str
) -> None:
    with connected(srv, "alice") as ws:
        got, data = error(ws, "subscribe", {"channel": "priv:a", "token": make()})
        assert got == code and reason_part in data["reason"], data
        assert request(ws, "subscriptions")["result"] == []
        subscribe(ws, "open:still-here")  # not closed: the error is the whole answer


def test_subscription_token_cannot_authenticate_a_connection(srv: ServerProcess) -> None:
    with ws_connect(srv.ws_url) as ws:
        resp = request(ws, "connect", {"token": sub_token("alice", "priv:a")})
        assert resp["error"]["code"] == -32011 and "subscription token" in resp["error"]["data"]["reason"]
        assert closed_code(ws)[0] == 4501


def test_manage_py_token_channel_is_a_subscription_token(srv: ServerProcess) -> None:
    made = manage(
        "token",
        "--user=alice",
        "--channel=priv:cli",
        env={"ROCKETWS_TOKEN_HMAC_SECRET": SECRET},
        inherit_env=False,
        timeout=30,
    )
    assert made.returncode == 0, made.stderr
    out = made.stdout.strip()
    with connected(srv, "alice") as ws:
        resp = request(ws, "subscribe", {"channel": "priv:cli", "token": out})
        assert resp["result"]["subscribed"] is True


# -- `#` channels ---------------------------------------------------------------------------


@pytest.mark.parametrize("channel", ["open:chat#alice,bob", "members:x#bob,alice"])
def test_user_limited_channel_takes_listed_users_only(srv: ServerProcess, channel: str) -> None:
    with connected(srv, "alice") as alice, connected(srv, "carol") as carol, connected(srv, "") as anon:
        subscribe(alice, channel)
        for ws in (carol, anon):
            code, data = error(ws, "subscribe", {"channel": channel})
            assert code == -32006 and data["reason"], data


def test_hash_is_an_ordinary_character_unless_the_namespace_limits_users(srv: ServerProcess) -> None:
    with connected(srv, "carol") as carol, connected(srv, "") as anon:
        subscribe(carol, "plain:chat#alice,bob")
        subscribe(anon, "plain:chat#alice,bob")


def test_user_limited_token_namespace_needs_both(srv: ServerProcess) -> None:
    channel = "priv:dm#alice"
    with connected(srv, "bob") as bob:
        code, _ = error(bob, "subscribe", {"channel": channel, "token": sub_token("bob", channel)})
        assert code == -32006  # a valid token does not put bob on alice's list


# -- allow_send_data ----------------------------------------------------------------------


def test_send_data_policies(srv: ServerProcess) -> None:
    with connected(srv, "alice") as alice, connected(srv, "bob") as bob, connected(srv, "") as anon:
        for ns in ("news", "legacy"):
            subscribe(alice, f"{ns}:x")
            code, data = error(alice, "send_data", {"channel": f"{ns}:x", "data": 1})
            assert code == -32005 and "disabled" in data["reason"]
        # subscribers (the default): only subscribers.
        code, _ = error(bob, "send_data", {"channel": "open:s", "data": 1})
        assert code == -32001
        # authenticated: any user, subscribed or not; never anonymous.
        subscribe(alice, "talk:t")
        assert request(bob, "send_data", {"channel": "talk:t", "data": "hi"})["result"]["delivered"] == 1
        assert recv_json(alice)["params"]["data"] == "hi"
        code, _ = error(anon, "send_data", {"channel": "talk:t", "data": 1})
        assert code == -32006
        code, _ = error(bob, "send_data", {"channel": "talk:t#alice", "data": 1})
        assert code == -32006  # not on the channel's list


# -- channel_regex, max_subscribers --------------------------------------------------------


def test_channel_regex_and_max_subscribers(srv: ServerProcess) -> None:
    with connected(srv, "a") as a, connected(srv, "b") as b, connected(srv, "c") as c:
        for bad in ("room:toolong", "room:UP", "room:"):
            code, data = error(a, "subscribe", {"channel": bad})
            assert code == -32005 and "channel_regex" in data["reason"], bad
        subscribe(a, "room:abc")
        subscribe(b, "room:abc")
        code, data = error(c, "subscribe", {"channel": "room:abc"})
        assert code == -32003 and data["limit"] == "max_subscribers" and data["max"] == 2
        assert request(a, "unsubscribe", {"channel": "room:abc"})["result"]["subscribed"] is False
        subscribe(c, "room:abc")  # room again


# -- bad configuration: one line, refused at start ---------------------------------------------


@pytest.mark.parametrize(
    ("namespaces", "env", "message"),
    [
        ([{"name": "r", "channel_regex": "(["}], {}, "not a valid regular expression"),
        ([{"name": "h", "history_size": 10}], {}, "keep history only together"),
        ([{"name": "p", "presence": True}], {}, "not implemented yet"),
        ([{"name": "s", "allow_subscribe": "maybe"}], {}, 'expected one of "any"'),
        ([{"name": "t", "allow_subscribe": "token"}], {"ROCKETWS_TOKEN_HMAC_SECRET": ""}, "token key"),
    ],
)
def test_bad_namespace_options_stop_the_start_in_one_line(
    namespaces: list[dict[str, Any]], env: dict[str, str], message: str
) -> None:
    proc = manage(
        *RUNSERVER_EPHEMERAL,
        env={"ROCKETWS_NAMESPACES": json.dumps(namespaces), **env},
        inherit_env=False,
        timeout=30,
    )
    assert proc.returncode != 0
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if message in line]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr


# -- control by user across two server processes on Redis -------------------------------------


@pytest.fixture
def cluster(redis_server: RedisServer, start_server: StartServer) -> list[ServerProcess]:
    broker = f"{redis_server.url}?prefix=perm-{uuid.uuid4().hex[:8]}:&presence_ttl=1"
    return [start_server(ROCKETWS_BROKER=broker, ROCKETWS_TOKEN_HMAC_SECRET=SECRET) for _ in range(2)]


def test_backend_controls_a_user_on_both_nodes(cluster: list[ServerProcess]) -> None:
    a, b = cluster
    with connected(a, "dora") as on_a, connected(b, "dora") as on_b, connected(b, "eve") as eve:
        # subscribe by user, asked on node a: both of dora's connections, eve untouched.
        assert a.result("subscribe", {"user": "dora", "channel": "inbox:dora"})["reached"] == 2
        for ws in (on_a, on_b):
            assert recv_json(ws)["method"] == "subscribed"
        b.call("emit", {"channel": "inbox:dora", "data": "mail"})
        assert recv_json(on_a)["params"]["data"] == "mail"
        assert recv_json(on_b)["params"]["data"] == "mail"
        # unsubscribe by user, asked on node b.
        assert b.result("unsubscribe", {"user": "dora", "channel": "inbox:dora"})["reached"] == 2
        for ws in (on_a, on_b):
            assert recv_json(ws)["method"] == "unsubscribed"
            assert request(ws, "subscriptions")["result"] == []
        # disconnect by user, asked on node b: both close with the code asked for.
        assert b.result("disconnect", {"user": "dora", "code": 4400, "reason": "bye"})["reached"] == 2
        assert closed_code(on_a) == (4400, "bye")
        assert closed_code(on_b) == (4400, "bye")
        assert request(eve, "ping")["result"] == "pong"


# -- command rate limit ---------------------------------------------------------------------


def test_rate_limit_refuses_then_disconnects(start_server: StartServer) -> None:
    srv = start_server(ROCKETWS_RATE_LIMIT="0.2", ROCKETWS_RATE_BURST="2", ROCKETWS_RATE_REFUSALS="3")
    with ws_connect(srv.ws_url) as ws:
        assert request(ws, "ping", rid=1)["result"] == "pong"
        assert request(ws, "ping", rid=2)["result"] == "pong"
        for rid in (3, 4):
            resp = request(ws, "ping", rid=rid)
            assert resp["id"] == rid and resp["error"]["code"] == -32029, resp
            assert resp["error"]["message"] == "Too many requests"
        ws.send(json.dumps({"jsonrpc": "2.0", "method": "ping", "id": 5}))
        assert closed_code(ws) == (4029, "too many requests")
    with ws_connect(srv.ws_url) as other:  # another connection has its own bucket
        assert request(other, "ping")["result"] == "pong"
