"""The WebSocket connection's state machine (rocketws/core/connection.py), without sockets.

Every row of ``TRANSITIONS`` is driven through the protocol's public inputs (real frame
bytes for what the peer sends), and every pair that is not in the table is shown to
change nothing.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Callable

import pytest

from rocketws.core import disconnect, framing
from rocketws.core.connection import (
    NEVER,
    NOTHING,
    PING_FRAME,
    TRANSITIONS,
    AuthTiming,
    ConnectionProtocol,
    Do,
    Input,
    Liveness,
    State,
    Step,
    refresh_required_frame,
)

from .wsraw import client_frame, close_payload

MAX = 1024
# 1 s sweeps: ping after 4 quiet ticks, give up 2 ticks later, drop after 3 stuck ticks
LIVE = Liveness(1.0, 4, 2, 3)


def _frame_input(data: bytes) -> Callable[[ConnectionProtocol], Step | None]:
    def feed(proto: ConnectionProtocol) -> Step | None:
        proto.receive_data(data)
        return proto.next_step()

    return feed


FEED: dict[Input, Callable[[ConnectionProtocol], Step | None]] = {
    Input.ACCEPTED: ConnectionProtocol.accept,
    Input.TEXT: _frame_input(client_frame(framing.OP_TEXT, b'{"x": 1}')),
    Input.PING: _frame_input(client_frame(framing.OP_PING, b"hi")),
    Input.PONG: _frame_input(client_frame(framing.OP_PONG, b"ho")),
    Input.PEER_CLOSE: _frame_input(client_frame(framing.OP_CLOSE, close_payload(4001, "bye"))),
    Input.VIOLATION: _frame_input(client_frame(framing.OP_TEXT, b"{}", mask=False)),
    Input.SERVER_CLOSE: lambda p: p.server_close(disconnect.SHUTDOWN, keep_queue=True),
    Input.FAILED: lambda p: p.failed("boom"),
    Input.SERVED: ConnectionProtocol.served,
    Input.SENT: ConnectionProtocol.sent,
    Input.TIMEOUT: ConnectionProtocol.timeout,
    Input.LOST: lambda p: p.lost("EOF"),
    Input.PING_DUE: lambda p: p.check(LIVE, 4, 0),
    Input.PONG_OVERDUE: lambda p: p.check(LIVE, 6, 0),
    Input.WRITE_STALLED: lambda p: p.check(LIVE, 0, 3),
    Input.REJECTED: lambda p: p.reject(disconnect.INVALID_TOKEN),
    Input.CONNECT_TIMEOUT: ConnectionProtocol.connect_timeout,
    Input.REFRESH_DUE: lambda p: p.refresh_due(0.0),
    Input.REFRESHED: lambda p: p.refreshed(100.0),
    Input.EXPIRED: ConnectionProtocol.expired,
}

# How to reach each state through inputs only.
PATH: dict[State, tuple[Input, ...]] = {
    State.CONNECTING: (),
    State.OPEN: (Input.ACCEPTED,),
    State.CLOSING: (Input.ACCEPTED, Input.SERVER_CLOSE),
    State.DRAINING: (Input.ACCEPTED, Input.PEER_CLOSE),
    State.CLOSED: (Input.ACCEPTED, Input.LOST),
}


def state_of(proto: ConnectionProtocol) -> State:
    """``proto.state``, read afresh (mypy narrows a repeated attribute read)."""
    return proto.state


def in_state(state: State) -> ConnectionProtocol:
    proto = ConnectionProtocol(MAX)
    for event in PATH[state]:
        FEED[event](proto)
    assert proto.state is state
    return proto


ROWS: list[tuple[State, Input]] = sorted(TRANSITIONS, key=lambda pair: (pair[0].value, pair[1].value))


@pytest.mark.parametrize(("state", "event"), ROWS, ids=lambda v: v.value)
def test_protocol_takes_each_transition_of_the_table(state: State, event: Input) -> None:
    proto = in_state(state)
    step = FEED[event](proto)
    next_state, actions = TRANSITIONS[(state, event)]
    assert proto.state is next_state
    assert step is not None and step.actions == actions


UNLISTED = [pair for pair in itertools.product(State, Input) if pair not in TRANSITIONS]


@pytest.mark.parametrize(("state", "event"), UNLISTED, ids=lambda v: v.value)
def test_protocol_ignores_inputs_that_are_not_in_the_table(state: State, event: Input) -> None:
    proto = in_state(state)
    step = FEED[event](proto)
    assert proto.state is state
    assert step is None or step == NOTHING


def test_every_input_can_be_fed() -> None:
    assert set(FEED) == set(Input)


def test_table_has_one_way_out_and_closed_absorbs() -> None:
    for (state, _event), (next_state, actions) in TRANSITIONS.items():
        assert (Do.RELEASE in actions) == (next_state is State.CLOSED and state is not State.CLOSED)
    assert all(ns is State.CLOSED for (s, _e), (ns, _a) in TRANSITIONS.items() if s is State.CLOSED)


# -- what the steps carry -----------------------------------------------------------------


def test_ping_is_answered_with_a_pong_of_the_same_payload() -> None:
    step = FEED[Input.PING](in_state(State.OPEN))
    assert step is not None
    assert step.actions == (Do.PONG,) and step.frame == framing.encode_frame(b"hi", framing.OP_PONG)


def test_text_message_is_dispatched_with_its_text() -> None:
    step = FEED[Input.TEXT](in_state(State.OPEN))
    assert step is not None and step.actions == (Do.DISPATCH,) and step.text == '{"x": 1}'


def test_requests_before_acceptance_are_dispatched_too() -> None:
    # CONNECTING serves requests; which methods are allowed there is the RPC layer's call
    step = FEED[Input.TEXT](in_state(State.CONNECTING))
    assert step is not None and step.actions == (Do.DISPATCH,)


def test_peer_close_is_echoed_after_queued_frames_and_reading_stops() -> None:
    proto = in_state(State.OPEN)
    proto.receive_data(
        client_frame(framing.OP_CLOSE, close_payload(4001, "bye"))
        + client_frame(framing.OP_TEXT, b"after the close")
    )
    step = proto.next_step()
    assert step is not None
    assert step.actions == (Do.STOP_READING, Do.CLOSE)
    assert step.frame == framing.close_frame(4001, "bye") and step.keep_queue
    assert not proto.reading and proto.next_step() is None  # nothing after a close frame (5.5.1)
    assert proto.reader.buffered == 0


def test_peer_close_without_a_code_is_answered_with_1000() -> None:
    proto = in_state(State.OPEN)
    proto.receive_data(client_frame(framing.OP_CLOSE))
    step = proto.next_step()
    assert step is not None and step.frame == framing.close_frame(1000, "")


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (client_frame(framing.OP_TEXT, b"{}", mask=False), 1002),
        (client_frame(framing.OP_BINARY, b"\x00"), 1003),
        (client_frame(framing.OP_TEXT, b"\xff"), 1007),
        (client_frame(framing.OP_TEXT, b"x" * (MAX + 1)), 1009),
    ],
)
def test_violation_closes_with_its_code_after_queued_frames(data: bytes, code: int) -> None:
    proto = in_state(State.OPEN)
    step = _frame_input(data)(proto)
    assert step is not None and step.actions == (Do.STOP_READING, Do.CLOSE)
    assert struct.unpack("!H", step.frame[2:4])[0] == code and step.keep_queue and step.detail
    assert proto.state is State.DRAINING


def test_frames_before_a_violation_are_stepped_first() -> None:
    proto = in_state(State.OPEN)
    proto.receive_data(client_frame(framing.OP_TEXT, b"1") + client_frame(framing.OP_TEXT, b"2", mask=False))
    first = proto.next_step()
    assert first is not None and first.text == "1"
    second = proto.next_step()
    assert second is not None and Do.CLOSE in second.actions


def test_text_and_pings_after_our_close_are_ignored_until_the_peer_answers() -> None:
    proto = in_state(State.CLOSING)
    proto.receive_data(
        client_frame(framing.OP_TEXT, b"late")
        + client_frame(framing.OP_PING, b"p")
        + client_frame(framing.OP_CLOSE, close_payload(1001))
    )
    assert proto.next_step() == NOTHING
    assert proto.next_step() == NOTHING
    step = proto.next_step()
    assert step is not None and step.actions == (Do.STOP_READING, Do.WRITE)  # no second close frame
    assert proto.state is State.DRAINING


@pytest.mark.parametrize("state", [State.CONNECTING, State.OPEN])
def test_server_close_keeps_or_drops_the_queue_as_asked(state: State) -> None:
    proto = in_state(state)
    step = proto.server_close(disconnect.SLOW_CONSUMER, keep_queue=False)
    assert step.actions == (Do.CLOSE,) and not step.keep_queue
    assert step.frame == framing.close_frame(4008, "slow consumer")
    assert proto.state is State.CLOSING and proto.reading  # reading on for the peer's close


def test_our_bug_closes_with_1011_dropping_the_queue() -> None:
    step = in_state(State.OPEN).failed("boom")
    assert step.actions == (Do.STOP_READING, Do.CLOSE) and not step.keep_queue
    assert step.frame == framing.close_frame(1011, "internal error")


# -- closes in every state ----------------------------------------------------------------


CLOSES = {
    "peer close": Input.PEER_CLOSE,
    "violation": Input.VIOLATION,
    "server close": Input.SERVER_CLOSE,
    "our bug": Input.FAILED,
    "lost": Input.LOST,
    "timeout": Input.TIMEOUT,
}


@pytest.mark.parametrize("state", list(State), ids=lambda s: s.value)
@pytest.mark.parametrize("close", CLOSES, ids=str)
def test_every_close_in_every_state_ends_closed_with_one_release(state: State, close: str) -> None:
    proto = in_state(state)
    releases = 0
    steps = [FEED[CLOSES[close]](proto)]
    # then the driver reports what it can: the writes finished, the close timer fired
    steps += [proto.sent(), proto.timeout(), proto.lost("EOF"), proto.sent()]
    releases = sum(Do.RELEASE in s.actions for s in steps if s is not None)
    closes = sum(Do.CLOSE in s.actions for s in steps if s is not None)
    assert proto.state is State.CLOSED
    assert releases == (0 if state is State.CLOSED else 1)
    assert closes <= 1
    assert proto.exit is not None and not proto.reading


def test_exit_records_who_closed_and_how_it_ended() -> None:
    proto = in_state(State.OPEN)
    proto.server_close(disconnect.SHUTDOWN, keep_queue=True)
    FEED[Input.PEER_CLOSE](proto)
    proto.sent()
    assert proto.exit is not None
    assert (proto.exit.initiator, proto.exit.sent, proto.exit.ended) == (
        "server",
        disconnect.SHUTDOWN,
        Input.SENT,
    )

    peer = in_state(State.OPEN)
    FEED[Input.VIOLATION](peer)
    peer.timeout()
    assert peer.exit is not None and peer.exit.initiator == "peer" and peer.exit.ended is Input.TIMEOUT
    assert peer.exit.sent is not None and peer.exit.sent.code == 1002 and "masked" in peer.exit.detail

    gone = in_state(State.OPEN)
    gone.lost("connection reset")
    assert gone.exit is not None
    assert (gone.exit.initiator, gone.exit.sent, gone.exit.detail) == ("lost", None, "connection reset")


# -- the guarantees the driver relies on --------------------------------------------------


def test_shutdown_while_a_request_is_served_forgets_what_it_subscribed() -> None:
    proto = in_state(State.OPEN)
    dispatch = FEED[Input.TEXT](proto)
    assert dispatch is not None and dispatch.actions == (Do.DISPATCH,)
    # the request blocks (a broker waiting for Redis); meanwhile the server shuts down
    close = proto.server_close(disconnect.SHUTDOWN, keep_queue=True)
    assert close.actions == (Do.CLOSE,) and close.keep_queue  # queued frames go first
    served = proto.served()
    assert served.actions == (Do.FORGET,)  # subscriptions made meanwhile are dropped
    assert proto.state is State.CLOSING


def test_slow_consumer_while_closing_sends_no_second_close_frame() -> None:
    proto = in_state(State.CLOSING)
    step = proto.server_close(disconnect.SLOW_CONSUMER, keep_queue=False)
    assert step == NOTHING and proto.state is State.CLOSING
    assert proto.timeout().actions == (Do.RELEASE,)  # the close timer still bounds it
    assert proto.exit is not None and proto.exit.sent == disconnect.SHUTDOWN


def test_served_in_open_state_does_nothing() -> None:
    proto = in_state(State.OPEN)
    assert proto.served() == NOTHING and proto.state is State.OPEN


def test_data_after_reading_stopped_is_not_buffered() -> None:
    proto = in_state(State.DRAINING)
    proto.receive_data(b"x" * 1000)
    assert proto.reader.buffered == 0 and proto.next_step() is None


# -- liveness: pings, the pong timeout, the write timeout -----------------------------------


@pytest.mark.parametrize(
    ("quiet", "stalled", "due"),
    [
        (0, 0, None),
        (3, 0, None),
        (4, 0, Input.PING_DUE),
        (5, 0, None),  # pinged at 4: one ping per silence
        (6, 0, Input.PONG_OVERDUE),
        (60, 0, Input.PONG_OVERDUE),
        (0, 2, None),
        (0, 3, Input.WRITE_STALLED),
        (4, 3, Input.WRITE_STALLED),  # a stuck socket is dropped first: a ping could not leave
    ],
)
def test_liveness_says_what_is_due(quiet: int, stalled: int, due: Input | None) -> None:
    assert LIVE.due(quiet, stalled) is due


def test_liveness_in_ticks_of_a_quarter_of_the_shortest_timeout() -> None:
    live = Liveness.from_seconds(25.0, 10.0, 10.0)
    assert live.period == 2.5
    # the ping is sent within a period before 25 s; nobody is given up early
    assert (live.ping_after, live.pong_within, live.write_within) == (10, 4, 5)
    assert live.first == 10
    fast = Liveness.from_seconds(0.5, 10.0, 10.0)
    assert (fast.period, fast.ping_after, fast.pong_within, fast.write_within) == (0.125, 4, 80, 81)


def test_liveness_checks_can_be_turned_off() -> None:
    no_pings = Liveness.from_seconds(0.0, 10.0, 2.0)
    assert (no_pings.period, no_pings.ping_after, no_pings.pong_within) == (0.5, 0, 0)
    assert no_pings.due(10**6, 0) is None and no_pings.due(0, 5) is Input.WRITE_STALLED
    nothing = Liveness.from_seconds(0.0, 10.0, 0.0)
    assert nothing.period == 0 and nothing.due(10**6, 10**6) is None


@pytest.mark.parametrize("state", [State.CONNECTING, State.OPEN])
def test_quiet_peer_is_pinged_once_and_stays_open(state: State) -> None:
    proto = in_state(state)
    steps = [proto.check(LIVE, quiet, 0) for quiet in range(1, 6)]
    pings = [s for s in steps if s.actions]
    assert pings == [Step((Do.PING,), frame=PING_FRAME)]
    assert PING_FRAME == bytes([0x89, 0x00])  # FIN + ping, no payload (5.5.2)
    assert proto.state is state and proto.reading


def test_peer_that_answers_nothing_is_failed_with_4009() -> None:
    proto = in_state(State.OPEN)
    proto.check(LIVE, 4, 0)
    step = proto.check(LIVE, 6, 0)
    assert step.actions == (Do.STOP_READING, Do.CLOSE) and not step.keep_queue
    assert step.frame == framing.close_frame(4009, "no pong")
    assert proto.state is State.DRAINING and not proto.reading
    assert proto.sent().actions == (Do.RELEASE,)
    assert proto.exit is not None
    assert (proto.exit.initiator, proto.exit.sent) == ("server", disconnect.NO_PONG)
    assert disconnect.NO_PONG.reconnect and disconnect.reconnect_allowed(4009)


def test_stalled_socket_is_dropped_at_once_with_4008_write_timeout() -> None:
    proto = in_state(State.OPEN)
    step = proto.check(LIVE, 0, 3)
    assert step.actions == (Do.CLOSE_NOW, Do.RELEASE)  # no waiting behind what cannot leave
    assert step.frame == framing.close_frame(4008, "write timeout")
    assert proto.state is State.CLOSED and proto.exit is not None
    assert (proto.exit.initiator, proto.exit.sent, proto.exit.ended) == (
        "server",
        disconnect.WRITE_STALLED,
        Input.WRITE_STALLED,
    )


@pytest.mark.parametrize("state", [State.CLOSING, State.DRAINING])
def test_close_stuck_behind_a_stalled_socket_is_released(state: State) -> None:
    proto = in_state(state)
    assert proto.check(LIVE, 100, 0) == NOTHING  # no pings, no 4009 while closing
    step = proto.check(LIVE, 0, 3)
    assert step.actions == (Do.RELEASE,) and proto.state is State.CLOSED
    assert proto.exit is not None and proto.exit.sent is not None and proto.exit.sent.code != 4008


def test_closed_connection_is_not_swept() -> None:
    proto = in_state(State.CLOSED)
    assert proto.check(LIVE, 4, 0) == NOTHING and proto.check(LIVE, 0, 3) == NOTHING


# -- authentication: connect deadline, refusal, expiry and refresh (the sweep's tick) ------

TIMING = AuthTiming(connect_timeout=10.0, refresh_notice=5.0, refresh_grace=25.0)


def authenticating(now: float = 1000.0) -> ConnectionProtocol:
    proto = ConnectionProtocol(MAX, timing=TIMING)
    proto.await_connect(now)
    return proto


def test_connecting_connection_is_closed_with_4010_at_the_connect_deadline() -> None:
    proto = authenticating(1000.0)
    assert proto.deadline == 1010.0
    assert proto.tick(1009.9) == NOTHING and proto.state is State.CONNECTING
    step = proto.tick(1010.0)
    assert step.actions == (Do.CLOSE,) and step.keep_queue
    assert step.frame == framing.close_frame(4010, "connect timeout")
    assert state_of(proto) is State.CLOSING and proto.reading  # reading on for the peer's close
    assert proto.tick(1011.0) == NOTHING  # once
    proto.timeout()
    assert proto.exit is not None and proto.exit.initiator == "server"
    assert proto.exit.sent == disconnect.CONNECT_TIMEOUT and disconnect.CONNECT_TIMEOUT.reconnect


def test_without_authentication_nothing_is_ever_due() -> None:
    proto = ConnectionProtocol(MAX)
    assert proto.deadline == NEVER and proto.tick(1e12) == NOTHING
    proto.accept()
    assert proto.deadline == NEVER and proto.tick(1e12) == NOTHING and proto.state is State.OPEN


def test_refused_connect_closes_after_its_error_answer_with_no_reconnect_code() -> None:
    proto = authenticating()
    step = proto.reject(disconnect.INVALID_TOKEN)
    assert step.actions == (Do.CLOSE,) and step.keep_queue  # the JSON-RPC error goes first
    assert step.frame == framing.close_frame(4501, "invalid token")
    assert not disconnect.INVALID_TOKEN.reconnect and not disconnect.TOKEN_EXPIRED.reconnect
    assert proto.tick(1e12) == NOTHING  # the connect deadline is moot once closing


def test_accepted_connection_no_longer_has_a_connect_deadline() -> None:
    proto = authenticating(1000.0)
    proto.accept()
    assert proto.state is State.OPEN and proto.tick(1e12) == NOTHING


def test_expiring_identity_is_asked_to_refresh_then_closed_with_4011() -> None:
    proto = authenticating(1000.0)
    proto.accept(expires_at=1100.0)
    assert proto.deadline == 1095.0  # refresh_notice before exp
    assert proto.tick(1094.0) == NOTHING
    step = proto.tick(1095.0)
    assert step.actions == (Do.NOTIFY,) and step.frame == refresh_required_frame(5)
    assert step.frame == framing.text_frame(
        b'{"jsonrpc":"2.0","method":"refresh_required","params":{"expires_in":5}}'
    )
    assert proto.tick(1100.0) == NOTHING  # one notification; the grace runs
    assert proto.tick(1124.9) == NOTHING and proto.state is State.OPEN
    step = proto.tick(1125.0)
    assert step.actions == (Do.CLOSE,) and step.frame == framing.close_frame(
        4011, "token expired, no refresh"
    )
    assert state_of(proto) is State.CLOSING and disconnect.EXPIRED.reconnect  # fetch a token, reconnect


def test_refresh_before_the_grace_ends_moves_the_deadline() -> None:
    proto = authenticating(1000.0)
    proto.accept(expires_at=1100.0)
    proto.tick(1095.0)  # refresh_required
    assert proto.refreshed(1200.0) == NOTHING and proto.state is State.OPEN
    assert proto.tick(1125.0) == NOTHING  # the old grace is gone
    assert proto.deadline == 1195.0 and proto.tick(1195.0).actions == (Do.NOTIFY,)


def test_identity_already_in_its_notice_is_asked_at_the_first_tick() -> None:
    proto = authenticating(1000.0)
    proto.accept(expires_at=1002.0)
    step = proto.tick(1000.0)
    assert step.actions == (Do.NOTIFY,) and step.frame == refresh_required_frame(2)


def test_liveness_period_also_serves_the_auth_deadlines() -> None:
    live = Liveness.from_seconds(25.0, 10.0, 10.0, deadlines=0.5)
    assert live.period == 0.125 and live.ping_after == 200  # ticks still count the same seconds
    assert Liveness.from_seconds(0.0, 10.0, 0.0, deadlines=10.0).period == 2.5  # sweeps with pings off
