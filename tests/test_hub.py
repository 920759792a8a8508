"""Unit tests of the Hub and Session (pure core, plain objects)."""

from __future__ import annotations

from rocketws.core.hub import Hub
from rocketws.core.session import Session


class Outlet:
    def __init__(self) -> None:
        self.wakes = 0

    def wake(self) -> None:
        self.wakes += 1


def make(limit: int = 1 << 20) -> tuple[Session, Outlet]:
    outlet = Outlet()
    return Session(outlet, limit), outlet


def test_hub_reports_first_and_last_subscriber() -> None:
    hub = Hub()
    a, _ = make()
    b, _ = make()
    assert hub.subscribe(a, "c") is True
    assert hub.subscribe(b, "c") is False
    assert hub.unsubscribe(a, "c") is False
    assert hub.unsubscribe(a, "c") is False  # idempotent
    assert hub.unsubscribe(b, "c") is True
    assert hub.channels() == {}


def test_hub_disconnect_removes_everything() -> None:
    hub = Hub()
    a, _ = make()
    b, _ = make()
    for s in (a, b):
        hub.connect(s)
    hub.subscribe(a, "x")
    hub.subscribe(a, "y")
    hub.subscribe(b, "y")
    assert sorted(hub.disconnect(a)) == ["x"]
    assert hub.channels() == {"y": 1} and hub.connections == 1 and not a.channels
    assert hub.disconnect(a) == []


def test_hub_fan_out_queues_same_bytes_and_skips_sender() -> None:
    hub = Hub()
    sessions = [make()[0] for _ in range(3)]
    for s in sessions:
        hub.connect(s)
        hub.subscribe(s, "c")
    frame = b"frame"
    assert hub.fan_out("c", frame, skip=sessions[0].id) == 2
    assert sessions[0].take() == b""
    assert all(s.take() is frame for s in sessions[1:])  # the very same object
    assert hub.fan_out("nobody", frame) == 0
    assert hub.broadcast(b"all") == 3


def test_session_wakes_once_per_batch_and_coalesces() -> None:
    s, outlet = make()
    s.push(b"a")
    s.push(b"b")
    assert outlet.wakes == 1 and s.pending == 2
    assert s.take() == b"ab"
    s.sent(2)
    assert s.pending == 0
    s.push(b"c")
    assert outlet.wakes == 2


def test_session_over_limit_and_closed() -> None:
    s, _ = make(limit=3)
    s.push(b"ab")
    assert not s.over_limit
    s.push(b"cd")
    assert s.over_limit
    s.close()
    assert s.push(b"x") is False and s.take() == b""
