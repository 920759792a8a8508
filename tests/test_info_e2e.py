"""The backend method ``info`` end to end: one node, and every node on the Redis broker."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import rocketws

from .redis_fixtures import RedisServer
from .support import ServerProcess, wait_until
from .wsraw import RawWebSocket


def test_info_on_one_node(start_server: Any) -> None:
    srv: ServerProcess = start_server()
    ws = RawWebSocket(srv.ws_port)
    assert ws.call("subscribe", 1, ["a"])["result"]["subscribed"] is True
    assert ws.call("subscribe", 2, ["b"])["result"]["subscribed"] is True
    info = srv.result("info")
    node = info["node"]
    assert info["nodes"] == [node] and info["complete"] is True
    assert node["version"] == rocketws.__version__ and node["id"]
    assert (node["connections"], node["users"], node["channels"], node["subscriptions"]) == (1, 0, 2, 2)
    assert node["broker"] == {"kind": "memory", "connected": True}
    assert 0 <= node["uptime"] < 60
    assert info["totals"] == {"nodes": 1, "connections": 1, "users": 0, "subscriptions": 2}
    ws.close()


@pytest.fixture
def two_nodes(redis_server: RedisServer) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    broker = f"{redis_server.url}?prefix=info-{uuid.uuid4().hex[:8]}:&presence_ttl=0.6"
    nodes = [ServerProcess(env={"ROCKETWS_BROKER": broker}).start() for _ in range(2)]
    try:
        yield nodes[0], nodes[1]
    finally:
        for node in nodes:
            node.kill()
            node.assert_no_traceback()


def test_info_across_two_nodes_on_redis(two_nodes: tuple[ServerProcess, ServerProcess]) -> None:
    a, b = two_nodes
    ws = RawWebSocket(a.ws_port)
    assert ws.call("subscribe", 1, ["x"])["result"]["subscribed"] is True
    a_id = a.result("info")["node"]["id"]

    def seen_from_b() -> dict[str, Any] | None:
        info: dict[str, Any] = b.result("info")
        others = [n for n in info["nodes"] if n["id"] == a_id]
        return info if others and others[0]["connections"] == 1 else None

    info = wait_until(seen_from_b, timeout=10)
    assert info["complete"] is True and info["totals"]["nodes"] == 2
    assert info["node"]["connections"] == 0 and info["node"]["broker"] == {"kind": "redis", "connected": True}
    assert info["nodes"][0] == info["node"]  # this node first, then the others
    assert info["totals"]["connections"] == 1
    ws.close()
    a.terminate()  # a clean stop removes its record at once
    wait_until(lambda: b.result("info")["totals"]["nodes"] == 1, timeout=10)


def test_info_with_redis_down_answers_for_this_node(private_redis: RedisServer) -> None:
    srv = ServerProcess(env={"ROCKETWS_BROKER": f"{private_redis.url}?timeout=0.3"}).start()
    try:
        private_redis.stop()
        info = wait_until(
            lambda: (lambda i: i if not i["complete"] else None)(srv.result("info")), timeout=10
        )
        assert info["nodes"] == [info["node"]]
        wait_until(lambda: srv.result("info")["node"]["broker"]["connected"] is False, timeout=10)
    finally:
        srv.kill()
    srv.assert_no_traceback()
