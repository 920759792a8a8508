"""End to end: ``write_delay`` makes publications arriving one by one leave in one write."""

from __future__ import annotations

import json
import threading
import time

from .support import ServerProcess, StartServer
from .wsraw import TEXT, RawWebSocket, split_frames

DELAY = 0.3  # the slow namespace's write_delay (s); the global one is the maximum, 1 s


class FirstRead:
    """Blocks in ``recv`` before anything is published; keeps the first chunk and when it
    came, so that chunk is exactly what the server's first write carried."""

    def __init__(self, ws: RawWebSocket) -> None:
        self.ws = ws
        self.chunk = b""
        self.at = 0.0
        self.done = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        self.chunk = self.ws.sock.recv(1 << 20)
        self.at = time.monotonic()
        self.done.set()

    def data(self) -> list[object]:
        assert self.done.wait(10), "nothing arrived"
        frames, rest = split_frames(self.chunk)
        assert rest == b"" and all(op == TEXT for op, _ in frames)
        return [json.loads(payload)["params"]["data"] for _, payload in frames]


def _subscribed(srv: ServerProcess, channel: str) -> RawWebSocket:
    ws = RawWebSocket(srv.ws_port)
    assert "result" in ws.call("subscribe", 1, {"channel": channel})
    return ws


def test_write_delay_namespace_coalesces_emits_sent_one_by_one(start_server: StartServer) -> None:
    srv = start_server(
        ROCKETWS_NAMESPACES=json.dumps(
            [{"name": "slow", "write_delay": DELAY}, {"name": "now", "write_delay": 0}]
        ),
        ROCKETWS_WRITE_DELAY="1.0",
    )
    slow = _subscribed(srv, "slow:a")
    reader = FirstRead(slow)
    t0 = time.monotonic()
    for i in range(5):  # five requests, each answered before the next is sent
        assert srv.result("emit", {"channel": "slow:a", "data": i})["delivered"] == 1
    assert reader.data() == [0, 1, 2, 3, 4]  # one write carried all five
    assert reader.at - t0 >= DELAY * 0.9  # held for the delay (libev timers may fire a little early)

    now = _subscribed(srv, "now:a")  # write_delay 0 overrides the global 1 s
    reader = FirstRead(now)
    t0 = time.monotonic()
    srv.result("emit", {"channel": "now:a", "data": "x"})
    assert reader.data() == ["x"] and reader.at - t0 < 0.9
    slow.close()
    now.close()


def _pushes(ws: RawWebSocket, n: int) -> list[object]:
    """The ``data`` of the next ``n`` pushes ``ws`` receives, in order."""
    got: list[object] = []
    while len(got) < n:
        op, payload = ws.read_frame()
        assert op == TEXT
        got.append(json.loads(payload)["params"]["data"])
    return got


def test_write_delay_keeps_each_connections_order_with_other_frames(start_server: StartServer) -> None:
    srv = start_server(
        ROCKETWS_NAMESPACES=json.dumps(
            [{"name": "slow", "write_delay": DELAY}, {"name": "now", "write_delay": 0}]
        )
    )
    both = _subscribed(srv, "slow:a")
    assert "result" in both.call("subscribe", 2, {"channel": "now:b"})
    slow_only = _subscribed(srv, "slow:a")

    def emit(channel: str, data: object, rid: int) -> dict[str, object]:
        return {"jsonrpc": "2.0", "method": "emit", "params": {"channel": channel, "data": data}, "id": rid}

    # One HTTP batch: its delayed publications share a window, with an immediate
    # publication and a broadcast between them.
    batch = [
        emit("slow:a", 1, 1),
        emit("now:b", "b", 2),
        emit("slow:a", 2, 3),
        {"jsonrpc": "2.0", "method": "notify_all", "params": {"data": "all"}, "id": 4},
        emit("slow:a", 3, 5),
    ]
    answers = srv.post(batch).json()
    assert [a["result"]["delivered"] for a in answers] == [2, 1, 2, 2, 2]
    assert _pushes(both, 5) == [1, "b", 2, "all", 3]  # the order they were published in
    assert _pushes(slow_only, 4) == [1, 2, "all", 3]
    late = _subscribed(srv, "slow:a")  # subscribed after them: gets only what follows
    assert srv.result("emit", {"channel": "slow:a", "data": 4})["delivered"] == 3
    assert _pushes(late, 1) == _pushes(both, 1) == _pushes(slow_only, 1) == [4]
    for ws in (both, slow_only, late):
        ws.close()
