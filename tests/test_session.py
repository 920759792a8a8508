"""Unit tests of the Session (rocketws/core/session.py; pure core, plain objects)."""

from __future__ import annotations

from rocketws.core.session import Session

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
