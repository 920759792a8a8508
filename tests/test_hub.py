"""Unit tests of the Hub (rocketws/core/hub.py; pure core, plain objects)."""

from __future__ import annotations

from rocketws.core.hub import Hub
from rocketws.core.session import Session

from .fakes import RecordingOutlet


def make(limit: int = 1 << 20) -> tuple[Session, RecordingOutlet]:
    outlet = RecordingOutlet()
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


def test_hub_fan_out_with_a_delay_queues_later_and_skips_sender() -> None:
    hub = Hub()
    made = [make() for _ in range(3)]
    for s, _ in made:
        hub.connect(s)
        hub.subscribe(s, "c")
    frame = b"frame"
    assert hub.fan_out("c", frame, delay=0.005) == 3  # nobody skipped
    assert hub.fan_out("c", b"second", skip=made[0][0].id, delay=0.005) == 2
    assert hub.broadcast(b"all", delay=0.005) == 3
    for _, outlet in made:  # one delayed wake per session, never an immediate one
        assert outlet.wakes == 0 and outlet.later == [0.005]
    assert made[0][0].take() == b"frameall"
    assert all(s.take() == b"framesecondall" for s, _ in made[1:])
