"""Unit tests of the Session (rocketws/core/session.py; pure core, plain objects)."""

from __future__ import annotations

from rocketws.core.session import Batch, Session

from .fakes import RecordingOutlet


def make(limit: int = 1 << 20) -> tuple[Session, RecordingOutlet]:
    outlet = RecordingOutlet()
    return Session(outlet, limit), outlet


# -- identity ---------------------------------------------------------------------------


def test_session_ids_are_unique_unless_given() -> None:
    a, _ = make()
    b, _ = make()
    assert a.id != b.id and len(a.id) == 32
    assert Session(RecordingOutlet(), 10, session_id="given").id == "given"


def test_session_starts_open_clean_and_empty() -> None:
    s, outlet = make()
    assert not s.closed and not s.dirty and s.pending == 0 and s.channels == set()
    assert s.take() == b"" and outlet.wakes == 0
    assert repr(s) == f"<Session {s.id} open channels=0>"


# -- push / wake / take / sent ----------------------------------------------------------


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


def test_session_push_accepts_and_marks_dirty_until_take() -> None:
    s, outlet = make()
    assert s.push(b"frame") is True
    assert s.dirty and outlet.wakes == 1
    s.take()
    assert not s.dirty
    s.take()  # nothing queued: no wake, still clean
    assert not s.dirty and outlet.wakes == 1


def test_session_take_of_one_frame_is_that_very_object() -> None:
    s, _ = make()
    frame = b"x" * 100
    s.push(frame)
    assert s.take() is frame
    assert s.take() == b""


def test_session_take_keeps_pending_until_sent() -> None:
    s, _ = make()
    s.push(b"abc")
    s.push(b"de")
    assert s.take() == b"abcde" and s.pending == 5  # taken, not yet written
    s.sent(3)  # a partial write
    assert s.pending == 2
    s.push(b"f")
    assert s.pending == 3
    s.sent(2)
    assert s.take() == b"f" and s.pending == 1


def test_session_wake_comes_on_first_push_after_take_even_with_bytes_pending() -> None:
    s, outlet = make()
    s.push(b"a")
    s.take()  # not yet sent: pending stays 1
    s.push(b"b")
    assert outlet.wakes == 2 and s.pending == 2


# -- over_limit -------------------------------------------------------------------------


def test_session_over_limit_and_closed() -> None:
    s, _ = make(limit=3)
    s.push(b"ab")
    assert not s.over_limit
    s.push(b"cd")
    assert s.over_limit
    s.close()
    assert s.push(b"x") is False and s.take() == b""


def test_session_over_limit_only_strictly_above_max_pending() -> None:
    s, _ = make(limit=4)
    s.push(b"abcd")
    assert not s.over_limit  # exactly at the limit
    s.push(b"e")
    assert s.over_limit
    s.take()
    assert s.over_limit  # taken but unwritten bytes still count
    s.sent(1)
    assert not s.over_limit


def test_session_push_never_refuses_for_size() -> None:
    """The limit is checked by the transport (over_limit), not by push."""
    s, _ = make(limit=1)
    assert s.push(b"much more than one byte") is True and s.over_limit


# -- close ------------------------------------------------------------------------------


def test_session_close_drops_queue_and_refuses_pushes_without_waking() -> None:
    s, outlet = make()
    s.push(b"queued")
    s.close()
    assert s.closed and not s.dirty
    assert s.take() == b""
    assert s.push(b"late") is False
    assert outlet.wakes == 1 and s.take() == b""
    assert repr(s).endswith("closed channels=0>")


def test_session_close_is_idempotent() -> None:
    s, _ = make()
    s.close()
    s.close()
    assert s.closed and s.push(b"x") is False


# -- push_later (write_delay) ------------------------------------------------------------


def test_session_push_later_wakes_once_with_the_first_delay_and_coalesces() -> None:
    s, outlet = make()
    assert s.push_later(b"a", 0.005) is True
    assert s.push_later(b"b", 0.02) is True
    assert outlet.later == [0.005] and outlet.wakes == 0 and s.pending == 2
    assert s.take() == b"ab" and not s.dirty
    s.push_later(b"c", 0.001)
    assert outlet.later == [0.005, 0.001]


def test_session_push_after_push_later_wakes_at_once_but_not_twice() -> None:
    s, outlet = make()
    s.push_later(b"a", 0.005)
    s.push(b"b")
    s.push(b"c")
    s.push_later(b"d", 0.005)
    assert outlet.later == [0.005] and outlet.wakes == 1
    assert s.take() == b"abcd"


def test_session_push_later_refused_once_closed() -> None:
    s, outlet = make()
    s.close()
    assert s.push_later(b"a", 0.005) is False
    assert outlet.later == [] and s.pending == 0


# -- push_batch (a channel's delayed publications, shared) -------------------------------


class SealLog:
    """The ``on_seal`` callback of the batches of a test: which were sealed, in order."""

    def __init__(self) -> None:
        self.sealed: list[Batch] = []

    def __call__(self, batch: Batch) -> None:
        self.sealed.append(batch)


def shared(frame: bytes, *sessions: Session, delay: float = 0.005) -> tuple[Batch, SealLog]:
    """A batch of ``frame`` queued to ``sessions`` (as ``Hub.fan_out`` does)."""
    log = SealLog()
    batch = Batch("c", frame, log)
    batch.holders.extend(s for s in sessions if s.push_batch(batch, delay))
    return batch, log


def test_session_push_batch_wakes_later_once_and_takes_what_was_appended() -> None:
    a, out_a = make()
    b, out_b = make()
    batch, log = shared(b"1", a, b)
    batch.append(b"22")
    batch.append(b"333")
    assert out_a.later == out_b.later == [0.005] and out_a.wakes == out_b.wakes == 0
    assert batch.open and a.pending == b.pending == 1  # appended bytes are charged on seal
    assert a.take() == b"122333"
    assert not batch.open and log.sealed == [batch] and batch.holders == []
    assert a.pending == b.pending == 6  # the seal charged every holder
    assert b.take() == b"122333" and b.take() == b""
    a.sent(6)
    assert a.pending == 0


def test_session_push_after_a_batch_seals_it_and_keeps_the_order() -> None:
    a, out_a = make()
    b, _ = make()
    batch, log = shared(b"p1", a, b)
    batch.append(b"p2")
    assert a.push(b"reply") is True  # queued after p1 p2: later publications go after it
    assert not batch.open and log.sealed == [batch] and out_a.wakes == 1
    assert a.take() == b"p1p2reply" and b.take() == b"p1p2"


def test_session_push_later_after_a_batch_seals_it_without_waking_again() -> None:
    a, out_a = make()
    batch, _ = shared(b"p1", a)
    a.push_later(b"x", 0.02)
    assert not batch.open and out_a.later == [0.005] and out_a.wakes == 0
    assert a.take() == b"p1x"


def test_session_batch_on_a_woken_session_does_not_wake_it_again() -> None:
    a, out_a = make()
    a.push(b"r")
    batch, _ = shared(b"p1", a)
    batch.append(b"p2")
    a.push(b"s")  # seals, no second wake
    assert out_a.wakes == 1 and out_a.later == [] and not batch.open
    assert a.take() == b"rp1p2s"


def test_session_second_batch_seals_the_first() -> None:
    a, out_a = make()
    first, _ = shared(b"a1", a)
    second, _ = shared(b"b1", a)
    assert not first.open and second.open and out_a.later == [0.005]
    second.append(b"b2")
    assert a.take() == b"a1b1b2" and not second.open


def test_session_close_and_rearm_seal_an_open_batch() -> None:
    a, _ = make()
    b, _ = make()
    batch, log = shared(b"p1", a, b)
    a.close()
    assert not batch.open and log.sealed == [batch] and b.take() == b"p1"
    c, out_c = make()
    batch, _ = shared(b"q1", c)
    batch.append(b"q2")
    c.rearm()  # a backlog is being written: the next push must wake, and the batch is done
    assert not batch.open and c.pending == 4 and not c.dirty
    c.push(b"r")
    assert out_c.wakes == 1 and c.take() == b"q1q2r"


def test_session_push_batch_refused_once_closed() -> None:
    a, out_a = make()
    a.close()
    batch, _ = shared(b"p1", a)
    assert batch.holders == [] and out_a.later == [] and a.pending == 0


def test_session_over_limit_counts_an_open_batch_once_sealed() -> None:
    a, _ = make(limit=10)
    batch, _ = shared(b"12345", a)
    batch.append(b"678901")
    assert not a.over_limit  # only the first frame is charged while it is open
    a.rearm()
    assert a.over_limit and a.pending == 11
