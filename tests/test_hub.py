"""Unit tests of the Hub (rocketws/core/hub.py; pure core, plain objects)."""

from __future__ import annotations

import random

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


# -- delayed publications of a channel share one Batch -----------------------------------


def subscribed(hub: Hub, n: int, channel: str = "c") -> list[tuple[Session, RecordingOutlet]]:
    made = [make() for _ in range(n)]
    for s, _ in made:
        hub.connect(s)
        hub.subscribe(s, channel)
    return made


def test_hub_delayed_publications_of_a_window_are_one_shared_batch() -> None:
    hub = Hub()
    made = subscribed(hub, 3)
    assert [hub.fan_out("c", f, delay=0.005) for f in (b"1", b"2", b"3")] == [3, 3, 3]
    for _, outlet in made:
        assert outlet.later == [0.005] and outlet.wakes == 0
    taken = [s.take() for s, _ in made]
    assert taken == [b"123"] * 3 and taken[0] is taken[1] is taken[2]  # joined once
    assert hub.fan_out("c", b"4", delay=0.005) == 3  # a new window, a new batch
    assert [s.take() for s, _ in made] == [b"4"] * 3


def test_hub_batch_reaches_only_the_subscribers_at_each_publication() -> None:
    hub = Hub()
    (a, _), (b, _) = subscribed(hub, 2)
    late, _ = make()
    hub.connect(late)
    hub.fan_out("c", b"1", delay=0.005)
    hub.subscribe(late, "c")
    assert hub.fan_out("c", b"2", delay=0.005) == 3
    hub.unsubscribe(a, "c")
    assert hub.fan_out("c", b"3", delay=0.005) == 2
    hub.disconnect(b)
    assert hub.fan_out("c", b"4", delay=0.005) == 1
    assert a.take() == b"12" and b.take() == b"123" and late.take() == b"234"


def test_hub_batch_keeps_order_with_replies_and_other_channels() -> None:
    hub = Hub()
    (a, _), (b, _) = subscribed(hub, 2)
    hub.subscribe(b, "other")
    hub.fan_out("c", b"1", delay=0.005)
    a.push(b"reply")
    hub.fan_out("other", b"o")  # immediate, to b only
    hub.fan_out("c", b"2", delay=0.005)
    hub.broadcast(b"all", delay=0.005)
    hub.fan_out("c", b"3", delay=0.005)
    assert a.take() == b"1reply2all3" and b.take() == b"1o2all3"


def test_hub_batch_falls_back_per_session_for_a_skipped_sender() -> None:
    hub = Hub()
    (a, _), (b, _) = subscribed(hub, 2)
    hub.fan_out("c", b"1", delay=0.005)
    assert hub.fan_out("c", b"2", skip=a.id, delay=0.005) == 1
    assert hub.fan_out("c", b"3", delay=0.005) == 2
    assert a.take() == b"13" and b.take() == b"123"


class Model:
    """What every session must receive: one list of frames per session, in queue order,
    and its wakes (the per-session ``push``/``push_later`` semantics)."""

    def __init__(self) -> None:
        self.queue: dict[str, list[bytes] | None] = {}
        self.dirty: dict[str, bool | int] = {}
        self.wakes: dict[str, int] = {}
        self.later: dict[str, list[float]] = {}
        self.channels: dict[str, set[str]] = {}  # channel -> session ids

    def add(self, sid: str) -> None:
        self.queue[sid], self.dirty[sid], self.wakes[sid], self.later[sid] = [], False, 0, []

    def push(self, sid: str, frame: bytes, delay: float = 0.0) -> int:
        q = self.queue[sid]
        if q is None:
            return 0
        q.append(frame)
        if not delay and self.dirty[sid] is not True:
            self.dirty[sid] = True
            self.wakes[sid] += 1
        elif delay and not self.dirty[sid]:
            self.dirty[sid] = 2
            self.later[sid].append(delay)
        return 1

    def fan_out(self, channel: str, frame: bytes, skip: str | None, delay: float) -> int:
        return sum(self.push(s, frame, delay) for s in self.channels.get(channel, ()) if s != skip)

    def take(self, sid: str) -> bytes:
        q = self.queue[sid]
        self.dirty[sid] = False
        if not q:
            return b""
        data = b"".join(q)
        q.clear()
        return data


def _join(hub: Hub, model: Model, sessions: list[tuple[Session, RecordingOutlet]]) -> None:
    s, outlet = make()
    hub.connect(s)
    model.add(s.id)
    sessions.append((s, outlet))


def test_hub_batches_deliver_exactly_what_per_session_pushes_would() -> None:
    for seed in range(150):
        rnd = random.Random(seed)
        hub, model = Hub(), Model()
        sessions: list[tuple[Session, RecordingOutlet]] = []
        for _ in range(4):
            _join(hub, model, sessions)
        for seq in range(300):
            s, outlet = rnd.choice(sessions)
            op = rnd.random()
            frame = b"<%d>" % seq
            if op < 0.45:
                channel = rnd.choice("abc")
                delay = rnd.choice((0.0, 0.005, 0.005, 0.02))
                skip = s.id if rnd.random() < 0.1 else None
                expected = model.fan_out(channel, frame, skip, delay)
                assert hub.fan_out(channel, frame, skip, delay=delay) == expected
            elif op < 0.5:
                delay = rnd.choice((0.0, 0.005))
                expected = sum(model.push(sid, frame, delay) for sid in model.queue)
                assert hub.broadcast(frame, delay=delay) == expected
            elif op < 0.6:
                model.push(s.id, frame)
                s.push(frame)  # a reply
            elif op < 0.7:
                channel = rnd.choice("abc")
                if not s.closed:
                    hub.subscribe(s, channel)
                    model.channels.setdefault(channel, set()).add(s.id)
            elif op < 0.75:
                channel = rnd.choice("abc")
                hub.unsubscribe(s, channel)
                model.channels.get(channel, set()).discard(s.id)
            elif op < 0.9:
                pending = len(b"".join(model.queue[s.id] or []))
                data = s.take()
                assert data == model.take(s.id), seed
                assert s.closed or s.pending == pending  # sealed batches charged every holder
                s.sent(len(data))
            elif op < 0.95:
                s.rearm()
                model.dirty[s.id] = False
            elif not s.closed:
                s.close()
                hub.disconnect(s)
                model.queue[s.id] = None
                for subs in model.channels.values():
                    subs.discard(s.id)
                _join(hub, model, sessions)
            for s, outlet in sessions:
                assert outlet.wakes == model.wakes[s.id] and outlet.later == model.later[s.id], seed
        for s, _ in sessions:
            assert s.take() == model.take(s.id), seed
