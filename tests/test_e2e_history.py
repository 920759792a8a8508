"""End to end: history, recovery and idempotent emits with real servers and sockets.

Issue 11 acceptance 2 (a subscriber's TCP connection reset mid-stream, then recovery, on
the memory broker and across two Redis nodes) and 3 (redis-server killed and restarted
while a backend emits, with and without persistence).
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from .redis_fixtures import RedisServer
from .support import ServerProcess, StartServer, wait_until
from .wsraw import CLOSE, TEXT, RawWebSocket

CHANNEL = "h:feed"
NAMESPACES = json.dumps([{"name": "h", "history_size": 1000, "history_ttl": 60}])


def _nodes(start: StartServer, url: str | None) -> tuple[ServerProcess, ServerProcess]:
    """(subscriber's node, publisher's node): one memory node twice, or two Redis nodes."""
    if url is None:
        node = start(ROCKETWS_NAMESPACES=NAMESPACES)
        return node, node
    broker = f"{url}?prefix=e2e-{uuid.uuid4().hex[:8]}:&presence_ttl=1"
    a = start(ROCKETWS_BROKER=broker, ROCKETWS_NAMESPACES=NAMESPACES)
    b = start(ROCKETWS_BROKER=broker, ROCKETWS_NAMESPACES=NAMESPACES)
    return a, b


class Publisher(threading.Thread):
    """A backend emitting 0, 1, 2, ... at ``rate`` per second for ``duration`` seconds;
    each with its own idempotency key, retried with that key until it succeeds."""

    def __init__(self, node: ServerProcess, rate: float, duration: float) -> None:
        super().__init__(daemon=True)
        self.url = node.ms_url
        self.count = int(rate * duration)
        self.interval = 1.0 / rate
        self.answers: list[dict[str, Any]] = []  # the success answer of each emit, in order
        self.failures = 0  # attempts answered with an error (or no answer)
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with requests.Session() as http:
                started = time.monotonic()
                for n in range(self.count):
                    time.sleep(max(0.0, started + n * self.interval - time.monotonic()))  # pacing the load
                    self.answers.append(self._emit(http, n))
        except BaseException as exc:  # reported by the test
            self.error = exc

    def _emit(self, http: requests.Session, n: int) -> dict[str, Any]:
        body = {
            "jsonrpc": "2.0",
            "method": "emit",
            "params": {"channel": CHANNEL, "data": n, "idempotency_key": f"emit-{n}"},
            "id": n,
        }
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                answer = http.post(self.url, json=body, timeout=5).json()
            except requests.RequestException:
                answer = {}
            if "result" in answer:
                result: dict[str, Any] = answer["result"]
                return result
            self.failures += 1
            time.sleep(0.02)  # a backend's retry interval
        raise AssertionError(f"emit {n} never succeeded")

    def finish(self) -> None:
        self.join(60)
        assert not self.is_alive() and self.error is None, self.error


class Follower:
    """A subscriber on raw sockets that keeps its position and what it received."""

    def __init__(self, node: ServerProcess) -> None:
        self.port = node.ws_port
        self.ws: RawWebSocket | None = None
        self.got: list[tuple[str, int, Any]] = []  # (epoch, offset, data) in arrival order
        self.position: dict[str, Any] | None = None
        self.answers: list[dict[str, Any]] = []  # subscribe answers
        self.lost: list[tuple[tuple[str, int], tuple[str, int]]] = []  # recovered false: (before, after)
        self.closes: list[int | None] = []
        self.errors = 0  # subscribe answers with an error (retried)

    def join(self) -> dict[str, Any]:
        """Connect and subscribe, with ``recover`` when it has a position; an error
        answer (the broker unavailable: -32002) is retried, as a client would."""
        deadline = time.monotonic() + 20
        while True:
            ws = self.ws = RawWebSocket(self.port)
            params: dict[str, Any] = {"channel": CHANNEL}
            if self.position is not None:
                params["recover"] = self.position
            ws.send_text(json.dumps({"jsonrpc": "2.0", "method": "subscribe", "params": params, "id": "sub"}))
            while True:
                opcode, payload = ws.read_frame()
                assert opcode == TEXT, (opcode, payload)
                message = json.loads(payload)
                if message.get("id") == "sub":
                    break
                self._push(message)
            if "result" in message:
                break
            assert message["error"]["code"] == -32002, message
            assert time.monotonic() < deadline, "subscribe kept failing"
            self.errors += 1
            ws.close()
            time.sleep(0.05)  # a client's retry interval
        result: dict[str, Any] = message["result"]
        self.answers.append(result)
        before = self.position
        if result.get("recovered") is False:
            assert before is not None and result["publications"] == []
            self.lost.append(((before["epoch"], before["offset"]), (result["epoch"], result["offset"])))
        for publication in result.get("publications", ()):
            self._take(publication)
        if result.get("recovered") is not True:
            self.position = {"offset": result["offset"], "epoch": result["epoch"]}
        return result

    def _push(self, message: dict[str, Any]) -> None:
        assert message["method"] == "message", message
        self._take(message["params"])

    def _take(self, params: dict[str, Any]) -> None:
        self.got.append((params["epoch"], params["offset"], params["data"]))
        self.position = {"offset": params["offset"], "epoch": params["epoch"]}

    def pump(self, timeout: float = 0.02) -> bool:
        """Read what arrives within ``timeout``; after a close by the server, join again
        with recovery.  False when nothing arrived."""
        assert self.ws is not None
        self.ws.sock.settimeout(timeout)
        try:
            opcode, payload = self.ws.read_frame()
        except TimeoutError:
            return False
        except (EOFError, ConnectionError):
            opcode, payload = CLOSE, b""
        finally:
            self.ws.sock.settimeout(10)
        if opcode == CLOSE:
            self.closes.append(struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None)
            self.ws.close()
            self.join()
        elif opcode == TEXT:
            self._push(json.loads(payload))
        return True

    def reset(self) -> None:
        """Drop the TCP connection with a reset (SO_LINGER 0), not a clean close."""
        assert self.ws is not None
        self.ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.ws.sock.close()
        self.ws = None


def pump_until(followers: list[Follower], done: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        for follower in followers:
            follower.pump()


def _offsets_contiguous_per_epoch(follower: Follower) -> None:
    """Within each epoch, what the follower holds has no hole and no duplicate."""
    by_epoch: dict[str, list[int]] = {}
    for epoch, offset, _ in follower.got:
        by_epoch.setdefault(epoch, []).append(offset)
    for epoch, offsets in by_epoch.items():
        assert offsets == list(range(offsets[0], offsets[0] + len(offsets))), (epoch, offsets)


# -- acceptance 2 -------------------------------------------------------------------------


@pytest.mark.parametrize("broker", ["memory", "redis"])
def test_subscriber_reset_mid_stream_recovers_every_publication_once_in_order(
    broker: str, request: pytest.FixtureRequest, start_server: StartServer
) -> None:
    url = None if broker == "memory" else request.getfixturevalue("redis_server").url
    node_a, node_b = _nodes(start_server, url)
    follower = Follower(node_a)
    first = follower.join()
    assert first == {"channel": CHANNEL, "subscribed": True, "epoch": first["epoch"], "offset": 0}
    publisher = Publisher(node_b, rate=100, duration=2.0)  # 200 emits on node B
    publisher.start()
    pump_until([follower], lambda: len(follower.got) >= 40, 10, "40 live pushes")
    follower.reset()
    received = len(follower.got)
    wait_until(lambda: len(publisher.answers) >= received + 60, timeout=10, what="60 emits missed")
    answer = follower.join()
    assert answer["recovered"] is True and len(answer["publications"]) >= 60
    publisher.finish()
    last = publisher.answers[-1]["offset"]
    pump_until([follower], lambda: follower.got[-1][1] >= last, 10, "the last publication")
    assert [data for _, _, data in follower.got] == list(range(publisher.count))  # once each, in order
    assert [offset for _, offset, _ in follower.got] == [a["offset"] for a in publisher.answers]
    assert {epoch for epoch, _, _ in follower.got} == {first["epoch"]}
    assert all(a["delivered"] <= 1 for a in publisher.answers)  # never more than the one subscriber


# -- acceptance 3 -------------------------------------------------------------------------


@pytest.mark.parametrize("persistence", ["none", "appendonly"])
def test_redis_restart_while_emitting_never_leaves_a_silent_gap(
    persistence: str, tmp_path: Path, start_server: StartServer
) -> None:
    extra = ("--appendonly", "yes", "--appendfsync", "always") if persistence == "appendonly" else ()
    redis = RedisServer(tmp_path, extra=extra)
    redis.start()
    try:
        node_a, node_b = _nodes(start_server, redis.url)
        followers = [Follower(node_a) for _ in range(3)]
        for follower in followers:
            follower.join()
        publisher = Publisher(node_b, rate=100, duration=3.0)
        publisher.start()
        pump_until(followers, lambda: all(len(f.got) >= 30 for f in followers), 10, "30 pushes each")
        redis.stop()  # SIGKILL while emitting
        pump_until(followers, lambda: publisher.failures >= 5, 10, "emits refused during the outage")
        redis.start()
        pump_until(followers, lambda: not publisher.is_alive(), 60, "every emit answered with success")
        publisher.finish()
        # every follower ends with a reconnect and a recovery, as a client coming back would
        for follower in followers:
            follower.reset()
            follower.join()
        final_epoch = publisher.answers[-1]["epoch"]
        last = publisher.answers[-1]["offset"]
        pump_until(
            followers,
            lambda: all(f.position == {"offset": last, "epoch": final_epoch} for f in followers),
            10,
            "every follower at the last publication",
        )
    finally:
        redis.stop()
    print(
        f"{persistence}: {publisher.failures} emit attempts refused and retried; followers: "
        + "; ".join(f"closes {f.closes}, subscribe errors {f.errors}, lost {f.lost}" for f in followers)
    )
    successes = {(a["epoch"], a["offset"]): n for n, a in enumerate(publisher.answers)}
    assert len(publisher.answers) == publisher.count == 300 and publisher.failures >= 5
    for follower in followers:
        _offsets_contiguous_per_epoch(follower)
        held = {(epoch, offset) for epoch, offset, _ in follower.got}
        assert len(held) == len(follower.got)  # nothing twice
        for position, n in successes.items():
            told = any(_in_lost(position, lost) for lost in follower.lost)
            assert position in held or told, f"emit {n} at {position} silently missing"
        for epoch, offset, data in follower.got:
            if (epoch, offset) in successes:
                assert successes[(epoch, offset)] == data
    if persistence == "appendonly":
        assert {a["epoch"] for a in publisher.answers} == {final_epoch}
        for follower in followers:
            assert follower.lost == [] and all(a.get("recovered", True) for a in follower.answers)
            # idempotency keys survived too: each emit exactly once, in order, despite retries
            assert [data for _, _, data in follower.got] == list(range(publisher.count))
    else:
        assert len({a["epoch"] for a in publisher.answers}) == 2  # the restart lost the streams
        for follower in followers:
            assert follower.lost, "the new epoch must have been reported as recovered: false"


def _in_lost(position: tuple[str, int], lost: tuple[tuple[str, int], tuple[str, int]]) -> bool:
    """Whether ``position`` is in what a ``recovered: false`` told the client it missed:
    after its old position in the old epoch, or up to its new position in the new one."""
    (old_epoch, old_offset), (new_epoch, new_offset) = lost
    epoch, offset = position
    return (epoch == old_epoch and offset > old_offset) or (epoch == new_epoch and offset <= new_offset)


# -- the methods over the wire --------------------------------------------------------------


def test_history_idempotency_and_errors_over_http_and_websocket(start_server: StartServer) -> None:
    node = start_server(ROCKETWS_NAMESPACES=NAMESPACES)
    first = node.result("emit", {"channel": CHANNEL, "data": "a", "idempotency_key": "k"})
    assert first == {"channel": CHANNEL, "delivered": 0, "offset": 1, "epoch": first["epoch"]}
    assert node.result("emit", {"channel": CHANNEL, "data": "other", "idempotency_key": "k"}) == first
    node.result("emit", {"channel": CHANNEL, "data": "b"})
    assert node.result("emit", {"channel": "plain", "data": 1}) == {"channel": "plain", "delivered": 0}
    read = node.result("history", {"channel": CHANNEL, "since": {"offset": 1, "epoch": first["epoch"]}})
    assert read == {
        "channel": CHANNEL,
        "epoch": first["epoch"],
        "offset": 2,
        "publications": [{"channel": CHANNEL, "data": "b", "ts": read["publications"][0]["ts"], "offset": 2,
                          "epoch": first["epoch"]}],
    }  # fmt: skip
    assert node.call("history", {"channel": "plain"})["error"]["code"] == -32005
    assert node.call("history", {"channel": CHANNEL, "limit": 10**6})["error"]["code"] == -32602
    bad_key = {"channel": CHANNEL, "data": 1, "idempotency_key": 7}
    assert node.call("emit", bad_key)["error"]["data"]["param"] == "idempotency_key"
    assert node.http.get(node.ms_url + "ready", timeout=10).json()["status"] == "ok"

    ws = RawWebSocket(node.ws_port)
    try:
        assert ws.call("history", 1, {"channel": CHANNEL})["error"]["code"] == -32001  # subscribers only
        answer = ws.call(
            "subscribe", 2, {"channel": CHANNEL, "recover": {"offset": 0, "epoch": first["epoch"]}}
        )
        assert [p["data"] for p in answer["result"]["publications"]] == ["a", "b"]
        assert (
            ws.call("history", 3, {"channel": CHANNEL, "reverse": True, "limit": 1})["result"][
                "publications"
            ][0]["data"]
            == "b"
        )
        wrong = ws.call("subscribe", 4, {"channel": "plain", "recover": {"offset": 0, "epoch": "x"}})
        assert wrong["error"]["code"] == -32005
        bad = ws.call("subscribe", 5, {"channel": "h:x", "recover": {"offset": -1, "epoch": "x"}})
        assert bad["error"]["code"] == -32602 and bad["error"]["data"]["param"] == "recover"
    finally:
        ws.close()
    node.assert_no_traceback()
