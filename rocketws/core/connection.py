"""A WebSocket connection's states and decisions, without I/O (RFC 6455 sections 5 and 7).

``ConnectionProtocol`` is told what happened (bytes received, the peer gone, a request
served, everything written, a timer fired, the server wants to close) and answers with a
``Step``: the actions the I/O driver must take, in order.  Every decision lives in one
table, ``TRANSITIONS``: (state, input) -> (next state, actions).  A pair that is not in
the table changes nothing.

::

    CONNECTING --ACCEPTED--> OPEN --SERVER_CLOSE--> CLOSING --PEER_CLOSE--> DRAINING
         |                    |                       |                        |
         |                    +--PEER_CLOSE, VIOLATION, FAILED, PONG_OVERDUE---+
         |                                                                     |
         +--------- LOST (any state), TIMEOUT (CLOSING, DRAINING) ---------> CLOSED
         +--------- WRITE_STALLED (any state but CLOSED) ------------------> CLOSED
                                                          DRAINING --SENT--> CLOSED

CONNECTING: upgraded, not yet accepted by the application.  Authentication happens here:
with none configured the driver accepts at once; else the connection waits for a
successful ``connect`` (ACCEPTED), a refused one (REJECTED: the error answer, then our
close frame), or the connect deadline (CONNECT_TIMEOUT, 4010).  CLOSING: our close frame is queued
and reading goes on, for the peer's close frame only.  DRAINING: reading is over; what
is queued is written, our close frame last, then the socket is closed.  The driver
closes the socket only on ``Do.RELEASE``, which happens once; ``exit`` records why.

Liveness (``Liveness``, fed by ``ConnectionProtocol.check``): the driver counts sweep
ticks, one periodic pass per process over every connection, and reports how many ticks
the peer has been quiet and how long the socket has refused bytes.  A quiet peer is
pinged (PING_DUE, RFC 6455 5.5.2); one that stays quiet, pong included (5.5.3), is
failed with 4009 (PONG_OVERDUE, 7.1.7); a socket that took nothing for the write
timeout while frames were pending is dropped (WRITE_STALLED).

Token expiry (``AuthTiming``, fed by ``ConnectionProtocol.tick`` from the same sweep with
the Unix time): ``deadline`` is when the protocol must next look; an accepted connection
whose identity expires gets a ``refresh_required`` notification ``refresh_notice``
seconds before ``exp`` (REFRESH_DUE), and is closed with 4011 when ``refresh_grace``
seconds after ``exp`` pass without a ``refresh`` (EXPIRED); REFRESHED moves ``exp``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum

import orjson

from rocketws.core import disconnect, framing
from rocketws.core.disconnect import Disconnect
from rocketws.core.exceptions import ProtocolViolation


class State(Enum):
    # By identity, as members compare: Enum's own ``__hash__`` is a Python-level call,
    # paid on every transition looked up in TRANSITIONS (docs/benchmarks.md, issue 10).
    __hash__ = object.__hash__

    CONNECTING = "connecting"
    OPEN = "open"
    CLOSING = "closing"
    DRAINING = "draining"
    CLOSED = "closed"


class Input(Enum):
    """What happened to the connection."""

    __hash__ = object.__hash__  # as State's

    ACCEPTED = "accepted"  # the application accepted the connection
    TEXT = "text"  # a whole text message arrived
    PING = "ping"
    PONG = "pong"
    PEER_CLOSE = "peer_close"  # the peer's close frame arrived
    VIOLATION = "violation"  # the peer broke RFC 6455 or a limit
    SERVER_CLOSE = "server_close"  # we close: shutdown, slow consumer, ...
    FAILED = "failed"  # our bug while serving the connection
    SERVED = "served"  # a request finished being served
    SENT = "sent"  # everything queued (our close frame included) is written
    TIMEOUT = "timeout"  # close_timeout passed without the closing handshake finishing
    LOST = "lost"  # EOF, reset or an I/O error without a close frame
    PING_DUE = "ping_due"  # the peer has sent nothing for the ping interval
    PONG_OVERDUE = "pong_overdue"  # ... nor in the pong timeout after our ping
    WRITE_STALLED = "write_stalled"  # the socket took no bytes for the write timeout
    #                                   while frames were pending
    # Connection authentication (AuthTiming; the sweep's ``tick``):
    REJECTED = "rejected"  # ``connect`` was refused: close after its error answer
    CONNECT_TIMEOUT = "connect_timeout"  # no successful ``connect`` in time
    REFRESH_DUE = "refresh_due"  # the identity expires soon: ask for a ``refresh``
    REFRESHED = "refreshed"  # a ``refresh`` moved the expiry
    EXPIRED = "expired"  # the identity expired and the refresh grace has passed


class Do(Enum):
    """What the driver must do."""

    __hash__ = object.__hash__  # as State's

    DISPATCH = "dispatch"  # serve ``Step.text`` (a JSON-RPC document)
    PONG = "pong"  # queue ``Step.frame`` (a pong), after what is queued (5.5.2)
    PING = "ping"  # queue ``Step.frame`` (our ping), after what is queued (5.5.2)
    NOTIFY = "notify"  # queue ``Step.frame`` (a JSON-RPC notification), after what is queued
    STOP_READING = "stop_reading"  # read nothing more from the socket
    CLOSE = "close"  # stop pushes; queue ``Step.frame`` (a close frame) after what is
    #                   queued if ``Step.keep_queue``, else instead of it; arm the close timer
    WRITE = "write"  # write what is queued now (the driver reports SENT when all is)
    FORGET = "forget"  # drop subscriptions a request made after the close began
    CLOSE_NOW = "close_now"  # stop pushes, drop everything unwritten; write ``Step.frame``
    #                           (a close frame) only if no frame is partly written and the
    #                           socket takes it whole at once; wait for nothing
    RELEASE = "release"  # close the socket and release everything (once)


Transition = tuple[State, tuple[Do, ...]]

_SERVING = {
    Input.TEXT: (Do.DISPATCH,),
    Input.PING: (Do.PONG,),
    # 5.5.1: answer the peer's close with ours (its code echoed), after queued replies.
    Input.PEER_CLOSE: (Do.STOP_READING, Do.CLOSE),
    Input.VIOLATION: (Do.STOP_READING, Do.CLOSE),
    Input.FAILED: (Do.STOP_READING, Do.CLOSE),
    # 7.1.7: a peer that stopped answering is failed: our close frame, nothing more read.
    Input.PONG_OVERDUE: (Do.STOP_READING, Do.CLOSE),
}


def _serving(state: State) -> dict[tuple[State, Input], Transition]:
    rows: dict[tuple[State, Input], Transition] = {
        (state, Input.TEXT): (state, _SERVING[Input.TEXT]),
        (state, Input.PING): (state, _SERVING[Input.PING]),
        (state, Input.PONG): (state, ()),
        (state, Input.SERVED): (state, ()),
        (state, Input.SERVER_CLOSE): (State.CLOSING, (Do.CLOSE,)),
        (state, Input.LOST): (State.CLOSED, (Do.RELEASE,)),
        # 5.5.2: a ping keeps proxies' idle timers from firing and asks for a pong.
        (state, Input.PING_DUE): (state, (Do.PING,)),
        # A socket that takes nothing cannot carry a closing handshake: drop it now.
        (state, Input.WRITE_STALLED): (State.CLOSED, (Do.CLOSE_NOW, Do.RELEASE)),
    }
    for event in (Input.PEER_CLOSE, Input.VIOLATION, Input.FAILED, Input.PONG_OVERDUE):
        rows[(state, event)] = (State.DRAINING, _SERVING[event])
    return rows


TRANSITIONS: Mapping[tuple[State, Input], Transition] = {
    (State.CONNECTING, Input.ACCEPTED): (State.OPEN, ()),
    # Authentication: a refusal or no connect in time closes after what is queued (the
    # refusal's error answer goes first); expiry asks for a refresh, then closes.
    (State.CONNECTING, Input.REJECTED): (State.CLOSING, (Do.CLOSE,)),
    (State.CONNECTING, Input.CONNECT_TIMEOUT): (State.CLOSING, (Do.CLOSE,)),
    (State.OPEN, Input.REFRESH_DUE): (State.OPEN, (Do.NOTIFY,)),
    (State.OPEN, Input.REFRESHED): (State.OPEN, ()),
    (State.OPEN, Input.EXPIRED): (State.CLOSING, (Do.CLOSE,)),
    # Before acceptance the connection is served like an open one; which methods a
    # request may call in CONNECTING is the RPC layer's decision.
    **_serving(State.CONNECTING),
    **_serving(State.OPEN),
    # CLOSING: after our close frame only the peer's close frame matters (5.5.1, 7.1.1).
    (State.CLOSING, Input.TEXT): (State.CLOSING, ()),
    (State.CLOSING, Input.PING): (State.CLOSING, ()),
    (State.CLOSING, Input.PONG): (State.CLOSING, ()),
    # Our close frame may be written already: WRITE makes the driver report SENT.
    (State.CLOSING, Input.PEER_CLOSE): (State.DRAINING, (Do.STOP_READING, Do.WRITE)),
    (State.CLOSING, Input.VIOLATION): (State.DRAINING, (Do.STOP_READING, Do.WRITE)),
    (State.CLOSING, Input.FAILED): (State.DRAINING, (Do.STOP_READING, Do.WRITE)),
    (State.CLOSING, Input.SERVER_CLOSE): (State.CLOSING, ()),  # one close frame only
    (State.CLOSING, Input.SERVED): (State.CLOSING, (Do.FORGET,)),
    (State.CLOSING, Input.SENT): (State.CLOSING, ()),  # wait for the peer's close frame
    (State.CLOSING, Input.TIMEOUT): (State.CLOSED, (Do.RELEASE,)),
    (State.CLOSING, Input.LOST): (State.CLOSED, (Do.RELEASE,)),
    # Our close frame cannot leave: the close timer may be longer than the write timeout.
    (State.CLOSING, Input.WRITE_STALLED): (State.CLOSED, (Do.RELEASE,)),
    # DRAINING: nothing is read; the socket closes once our close frame is written.
    (State.DRAINING, Input.SERVED): (State.DRAINING, (Do.FORGET,)),
    (State.DRAINING, Input.SENT): (State.CLOSED, (Do.RELEASE,)),
    (State.DRAINING, Input.TIMEOUT): (State.CLOSED, (Do.RELEASE,)),
    (State.DRAINING, Input.LOST): (State.CLOSED, (Do.RELEASE,)),
    (State.DRAINING, Input.WRITE_STALLED): (State.CLOSED, (Do.RELEASE,)),
    (State.CLOSED, Input.SERVED): (State.CLOSED, (Do.FORGET,)),
}


@dataclass(frozen=True, slots=True)
class Step:
    """The actions for one input, with what they need."""

    actions: tuple[Do, ...] = ()
    text: str | None = None  # DISPATCH: the message
    frame: bytes = b""  # PONG / PING / CLOSE / CLOSE_NOW: the frame to queue
    keep_queue: bool = True  # CLOSE: deliver what is queued before the close frame
    detail: str = ""  # CLOSE: what the peer did wrong (for the log), if anything


NOTHING = Step()
PING_FRAME = framing.encode_frame(b"", framing.OP_PING)  # 5.5.2: the payload is optional
NEVER = math.inf  # a ``deadline`` or ``expires_at`` that never comes


def refresh_required_frame(expires_in: int) -> bytes:
    """The ``refresh_required`` notification (docs/protocol.md#authentication)."""
    push = {"jsonrpc": "2.0", "method": "refresh_required", "params": {"expires_in": expires_in}}
    return framing.text_frame(orjson.dumps(push))


@dataclass(frozen=True, slots=True)
class AuthTiming:
    """Seconds that bound authentication: ``connect_timeout`` for a successful
    ``connect``; ``refresh_notice`` before ``exp`` the ``refresh_required`` push goes out;
    ``refresh_grace`` after ``exp`` for a ``refresh`` before the connection is closed."""

    connect_timeout: float = 10.0
    refresh_notice: float = 5.0
    refresh_grace: float = 25.0


DEFAULT_TIMING = AuthTiming()


@dataclass(frozen=True, slots=True)
class Liveness:
    """When a connection is pinged, failed for want of a pong, or dropped for a stalled
    write, counted in ticks of the driver's sweep (one pass every ``period`` seconds).

    Build it with ``from_seconds``.  A count of 0 means that check is off; ``period`` is 0
    when every check is off (then no sweep runs).
    """

    period: float  # seconds between two sweeps
    ping_after: int  # ticks without a received byte before we ping
    pong_within: int  # ticks after the ping before the peer is given up
    write_within: int  # ticks the socket may refuse every byte while frames are pending

    @classmethod
    def from_seconds(
        cls, ping_interval: float, pong_timeout: float, write_timeout: float, deadlines: float = 0.0
    ) -> Liveness:
        """Ticks for the timeouts (0 = off); the period is a quarter of the shortest one.
        ``deadlines``: the shortest other timeout the sweep serves (``AuthTiming``'s), 0
        when none; it shortens the period but is not counted in ticks.

        A tick is counted at a sweep and a received byte or a write can happen anywhere
        between two sweeps, so a quiet peer is pinged after ``ping_interval`` minus at most
        one period, and nobody is given up before their timeout, nor more than one period
        after it.
        """
        timeouts = (ping_interval, pong_timeout if ping_interval else 0, write_timeout, deadlines)
        used = [t for t in timeouts if t > 0]
        if not used:
            return cls(0.0, 0, 0, 0)
        period = min(used) / 4

        def ticks(seconds: float, slack: int) -> int:
            return math.ceil(seconds / period - 1e-9) + slack if seconds > 0 else 0

        return cls(
            period,
            ticks(ping_interval, 0),
            ticks(pong_timeout, 0) if ping_interval else 0,  # ping and check both on ticks
            ticks(write_timeout, 1),  # the last write was up to one tick before the count
        )

    @property
    def first(self) -> int:
        """The fewest quiet ticks that can make anything due (sweeps skip the rest)."""
        return self.ping_after or (1 << 62)

    def due(self, quiet: int, stalled: int) -> Input | None:
        """What is due for a connection quiet for ``quiet`` ticks whose socket has taken
        nothing for ``stalled`` ticks with frames pending (0: nothing pending)."""
        if self.write_within and stalled >= self.write_within:
            return Input.WRITE_STALLED
        if self.ping_after:
            if quiet >= self.ping_after + self.pong_within:
                return Input.PONG_OVERDUE
            if quiet == self.ping_after:  # ticks grow by one per sweep: one ping per silence
                return Input.PING_DUE
        return None


@dataclass(frozen=True, slots=True)
class Exit:
    """Why a connection ended: who began it, the close sent (if any), how it finished.

    ``initiator`` is ``peer`` (its close frame or a violation), ``server`` or ``lost``
    (the TCP connection ended without a close frame).  ``ended`` is the input that
    closed the socket: SENT (a clean close), TIMEOUT, LOST or WRITE_STALLED.
    """

    initiator: str
    sent: Disconnect | None
    ended: Input
    detail: str = ""


class ConnectionProtocol:
    """The state of one WebSocket connection and every decision about it; no I/O.

    Feed received bytes with ``receive_data`` and take steps with ``next_step`` until it
    returns None; report everything else with the methods named for the input.  Read
    ``state``, ``reading`` and, once CLOSED, ``exit``.

    ``inflater``: given when permessage-deflate was negotiated (see ``FrameReader``).
    """

    __slots__ = (
        "state",
        "reader",
        "exit",
        "deadline",
        "expires_at",
        "timing",
        "_closed_by",
    )

    def __init__(
        self,
        max_message_size: int,
        inflater: Callable[[int], framing.Inflate] | None = None,
        timing: AuthTiming = DEFAULT_TIMING,
    ) -> None:
        self.state = State.CONNECTING
        self.reader = framing.FrameReader(max_message_size, inflater)
        self.exit: Exit | None = None
        self.deadline = NEVER  # the Unix time ``tick`` must next act at
        self.expires_at = NEVER  # the accepted identity's expiry
        self.timing = timing
        # (initiator, the close frame we queued, detail), once a close began: one slot,
        # and no object until then, as idle connections are many.
        self._closed_by: tuple[str, Disconnect, str] | None = None

    def __repr__(self) -> str:
        return f"<ConnectionProtocol {self.state.value}>"

    @property
    def reading(self) -> bool:
        """Whether the driver should read from the socket."""
        return self.state in _READING

    # -- inputs ---------------------------------------------------------------------

    def accept(self, expires_at: float = NEVER) -> Step:
        """The application accepted the connection (CONNECTING -> OPEN), its identity
        valid until ``expires_at`` (Unix time)."""
        step = self._go(Input.ACCEPTED)
        if self.state is State.OPEN:
            self._expire_at(expires_at)
        return step

    def await_connect(self, now: float) -> None:
        """Authentication is required: a successful ``connect`` must come by
        ``now + timing.connect_timeout`` (then ``tick`` closes with 4010)."""
        if self.state is State.CONNECTING:
            self.deadline = now + self.timing.connect_timeout

    def reject(self, why: Disconnect) -> Step:
        """``connect`` was refused: close with ``why`` after what is queued."""
        return self._go(Input.REJECTED, why, f"connect refused: {why}")

    def connect_timeout(self) -> Step:
        """No successful ``connect`` came in time."""
        detail = f"no connect within {self.timing.connect_timeout:g} s"
        return self._go(Input.CONNECT_TIMEOUT, disconnect.CONNECT_TIMEOUT, detail)

    def refresh_due(self, now: float) -> Step:
        """The identity expires within ``refresh_notice``: push ``refresh_required``."""
        actions = self._move(Input.REFRESH_DUE)
        if not actions:
            return NOTHING
        self.deadline = self.expires_at + self.timing.refresh_grace
        left = self.expires_at - now
        return Step(actions, frame=refresh_required_frame(max(0, math.ceil(left)) if left < NEVER else 0))

    def refreshed(self, expires_at: float) -> Step:
        """A ``refresh`` moved the expiry to ``expires_at``."""
        step = self._go(Input.REFRESHED)
        if self.state is State.OPEN:
            self._expire_at(expires_at)
        return step

    def expired(self) -> Step:
        """The identity expired and the refresh grace passed."""
        detail = f"token expired {self.timing.refresh_grace:g} s ago without a refresh"
        return self._go(Input.EXPIRED, disconnect.EXPIRED, detail)

    def tick(self, now: float) -> Step:
        """The sweep, with the Unix time: whatever ``deadline`` says is due."""
        if now < self.deadline:
            return NOTHING
        if self.state is State.CONNECTING:
            return self.connect_timeout()
        if self.state is not State.OPEN:
            self.deadline = NEVER
            return NOTHING
        if now >= self.expires_at + self.timing.refresh_grace:
            return self.expired()
        return self.refresh_due(now)

    def _expire_at(self, expires_at: float) -> None:
        self.expires_at = expires_at or NEVER
        self.deadline = self.expires_at - self.timing.refresh_notice

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Bytes from the socket, in order (ignored once reading is over)."""
        if self.state in _READING:
            self.reader.feed(data)

    def next_step(self) -> Step | None:
        """The step for the next complete frame received, or None (more bytes needed,
        or reading is over)."""
        if self.state not in _READING:
            return None
        try:
            event = self.reader.next_event()
        except ProtocolViolation as exc:  # the reader has dropped its buffer
            return self._go(Input.VIOLATION, Disconnect.for_code(exc.close_code, exc.reason), str(exc))
        if event is None:
            return None
        if isinstance(event, framing.TextMessage):
            actions = self._move(Input.TEXT)
            return Step(actions, text=event.text) if actions else NOTHING
        if isinstance(event, framing.Ping):
            actions = self._move(Input.PING)
            if not actions:
                return NOTHING
            return Step(actions, frame=framing.encode_frame(event.payload, framing.OP_PONG))
        if isinstance(event, framing.Pong):
            return self._go(Input.PONG)
        # 5.5.1: echo the peer's code and reason; a close without a code is answered 1000.
        self.reader.clear()
        code = disconnect.NORMAL.code if event.code is None else event.code
        return self._go(Input.PEER_CLOSE, Disconnect.for_code(code, event.reason))

    def server_close(self, why: Disconnect, *, keep_queue: bool) -> Step:
        """The server closes: shutdown (``keep_queue``), slow consumer (not), ..."""
        return self._go(Input.SERVER_CLOSE, why, keep_queue=keep_queue)

    def failed(self, detail: str = "") -> Step:
        """Our bug while serving: close with 1011, dropping what is queued."""
        return self._go(Input.FAILED, disconnect.INTERNAL_ERROR, detail, keep_queue=False)

    def served(self) -> Step:
        """A request has been served (its reply, if any, queued)."""
        return self._go(Input.SERVED)

    def sent(self) -> Step:
        """Everything queued has been written to the socket."""
        return self._go(Input.SENT)

    def timeout(self) -> Step:
        """The close timer fired."""
        return self._go(Input.TIMEOUT)

    def lost(self, detail: str = "") -> Step:
        """The TCP connection ended without a close frame (EOF, reset, I/O error)."""
        return self._go(Input.LOST, detail=detail)

    def check(self, liveness: Liveness, quiet: int, stalled: int) -> Step:
        """The sweep: nothing received for ``quiet`` ticks; the socket has taken nothing
        for ``stalled`` ticks while frames are pending (0: nothing pending)."""
        event = liveness.due(quiet, stalled)
        if event is Input.PING_DUE:
            actions = self._move(event)
            return Step(actions, frame=PING_FRAME) if actions else NOTHING
        if event is Input.PONG_OVERDUE:
            detail = f"no pong within {liveness.pong_within} sweep(s) of our ping"
            return self._go(event, disconnect.NO_PONG, detail, keep_queue=False)
        if event is Input.WRITE_STALLED:
            detail = f"the socket took nothing for {stalled} sweep(s)"
            return self._go(event, disconnect.WRITE_STALLED, detail, keep_queue=False)
        return NOTHING

    # -- the table ------------------------------------------------------------------

    def _move(self, event: Input) -> tuple[Do, ...]:
        """Take the transition for ``event``; return its actions."""
        transition = TRANSITIONS.get((self.state, event))
        if transition is None:
            return ()
        self.state, actions = transition
        return actions

    def _go(
        self,
        event: Input,
        why: Disconnect | None = None,
        detail: str = "",
        *,
        keep_queue: bool = True,
    ) -> Step:
        """Take the transition for ``event``; record a close or the exit it makes."""
        actions = self._move(event)
        if not actions:
            return NOTHING
        frame = b""
        if Do.CLOSE in actions or Do.CLOSE_NOW in actions:
            if why is None:
                raise ValueError(f"{event} closes the connection and needs a Disconnect")
            self._closed_by = ("server" if event in _SERVER_INITIATED else "peer", why, detail)
            frame = framing.close_frame(why.code, why.reason)
        if Do.RELEASE in actions:
            self.reader.clear()
            if self._closed_by is None:
                self.exit = Exit("lost", None, event, detail)
            else:
                initiator, sent, why_detail = self._closed_by
                self.exit = Exit(initiator, sent, event, why_detail)
        return Step(actions, frame=frame, keep_queue=keep_queue, detail=detail)


_READING = frozenset((State.CONNECTING, State.OPEN, State.CLOSING))
_SERVER_INITIATED = frozenset(
    (
        Input.SERVER_CLOSE,
        Input.FAILED,
        Input.PONG_OVERDUE,
        Input.WRITE_STALLED,
        Input.REJECTED,
        Input.CONNECT_TIMEOUT,
        Input.EXPIRED,
    )
)
