"""Micro-benchmarks of the core (no sockets, no processes): µs per operation, in seconds.

Operations (``--only`` takes their names, comma-separated):

- ``framing.read_text_frame``  ``FrameReader.feed`` + ``next_event`` of one 184-byte
  masked client text frame (a 176-byte JSON-RPC ``send_data`` payload, 16-bit length,
  a non-zero mask key).
- ``hub.fan_out_1000``         ``Hub.fan_out`` of one 184-byte push frame to 1,000
  subscribed sessions whose outlet does nothing (``wake`` is a no-op).
- ``rpc.dispatch_emit``        ``rpc.dispatch`` of one ``emit`` request (100-byte data)
  on the backend methods, memory broker, one subscribed session on the channel.
- ``rpc.dispatch_batch_100``   the same with a batch of 100 emits in one document.
- ``auth.connect_hs256``       (only with ``--only``) ``rpc.dispatch`` of one ``connect`` request carrying an
  HS256 token (``sub``, ``exp``, ``aud``, a small ``info``) on the CONNECTING methods:
  parse, token verification with an audience check (the HS* fast path of
  ``core/tokens.py``), the identity set on the session and indexed by user in the hub, the
  connection protocol accepted, the answer encoded (the whole server-side path of
  ``connect`` but the socket read and write).
- ``auth.connect_hs256_pyjwt`` (only with ``--only``) the same with every token through PyJWT's
  ``decode`` (``hmac_fast_path=False``): the reference for the fast path, in the same run.
- ``rpc.dispatch_emit_metrics``, ``rpc.dispatch_batch_100_metrics`` (only with ``--only``)
  the two dispatch operations with METRICS on: calls counted, documents timed.

Each operation is timed in loops calibrated to ``--target`` seconds per repeat; the figure
is the median over ``--repeat`` repeats (default 5).  The clock is this thread's CPU time
(``time.thread_time``), so time spent descheduled by other load on a shared machine does
not count; ``--clock wall`` uses ``perf_counter`` instead.  Only the operation is timed: the
sessions' outboxes are emptied between operations outside the timed region, so every
operation starts from the same state (each push finds its session idle and calls
``wake``, as when publications arrive one at a time).  As in ``timeit``, the garbage
collector is off while timing.

Usage::

    python -m benchmarks.micro                 # every operation, median of 5
    python -m benchmarks.micro --json          # the same as one JSON document
    python -m benchmarks.micro --quick         # smoke run: tiny loops, 2 repeats
    python -m benchmarks.micro --only hub.fan_out_1000 --repeat 9
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

import orjson

from rocketws.brokers.memory import MemoryBroker
from rocketws.core import rpc
from rocketws.core.auth import Authenticator
from rocketws.core.connection import ConnectionProtocol
from rocketws.core.disconnect import Disconnect
from rocketws.core.framing import FrameReader, TextMessage, text_frame
from rocketws.core.hub import Hub
from rocketws.core.jsonrpc import encode_message_push
from rocketws.core.node import Node
from rocketws.core.session import Session
from rocketws.core.stats import RpcStats
from rocketws.core.tokens import Identity, TokenVerifier

from .harness import CHANNEL, emit_body
from .machine import describe, machine_info
from .wsclient import client_frame

DATA = "x" * 100  # the emitted data string of the fan-out scenario (a 184-byte push frame)
CLIENT_FRAME_BYTES = 184
FANOUT_SESSIONS = 1000
BATCH = 100
MASK_KEY = b"\x37\xfa\x21\x3d"  # RFC 6455 5.7's example key
MAX_PENDING = 1 << 30  # outboxes are emptied after each operation; the bound never applies

Clock = Callable[[], float]
# An operation's timer: run it ``loops`` times, return the seconds ``clock`` spent in it.
Timer = Callable[[int, Clock], float]
# cpu: this thread's CPU time, so time spent descheduled by other load on a shared
# machine does not count (the end-to-end benchmark also reports CPU); wall: perf_counter
CLOCKS: dict[str, Clock] = {"cpu": time.thread_time, "wall": time.perf_counter}


class NullOutlet:
    """A transport that does nothing when its session has frames to send."""

    def wake(self) -> None:
        pass

    def wake_later(self, delay: float) -> None:
        pass

    def close(self, why: Disconnect) -> None:
        pass

    def extend(self, expires_at: float) -> None:
        pass


def drain(sessions: Iterable[Session]) -> None:
    """Empty every outbox, as a writer that sent everything would."""
    for s in sessions:
        s.sent(len(s.take()))


def timed(op: Callable[[], object], reset: Callable[[], None] | None = None) -> Timer:
    """A timer of ``op``; with ``reset``, that runs untimed after each call."""

    def run(loops: int, clock: Clock) -> float:
        if reset is None:
            t0 = clock()
            for _ in range(loops):
                op()
            return clock() - t0
        spent = 0.0
        for _ in range(loops):
            t0 = clock()
            op()
            spent += clock() - t0
            reset()
        return spent

    return run


# -- the operations ------------------------------------------------------------------------


def client_text_frame(size: int = CLIENT_FRAME_BYTES) -> tuple[bytes, bytes]:
    """(a masked client text frame of exactly ``size`` bytes, its unmasked payload)."""
    payload_len = size - 2 - 4  # 2-byte header, 4-byte mask key
    if payload_len >= 126:  # RFC 6455 5.2: a 16-bit extended length follows
        payload_len -= 2
    head = orjson.dumps(
        {"jsonrpc": "2.0", "method": "send_data", "params": {"channel": CHANNEL, "data": ""}, "id": 1}
    )
    pad = payload_len - len(head)
    payload = head.replace(b'"data":""', b'"data":"' + b"x" * pad + b'"')
    frame = client_frame(payload, key=MASK_KEY)
    if len(frame) != size:
        raise ValueError(f"cannot build a {size}-byte client frame (got {len(frame)})")
    return frame, payload


def read_text_frame() -> Timer:
    frame, payload = client_text_frame()
    reader = FrameReader()

    def op() -> object:
        reader.feed(frame)
        return reader.next_event()

    event = op()
    if not isinstance(event, TextMessage) or event.text.encode() != payload:
        raise RuntimeError(f"FrameReader returned {event!r}")
    return timed(op)


def subscribed_hub() -> tuple[Hub, list[Session], bytes]:
    """A hub with ``FANOUT_SESSIONS`` sessions on CHANNEL (no-op outlets), and the
    fan-out scenario's 184-byte push frame."""
    hub = Hub()
    outlet = NullOutlet()
    sessions = [Session(outlet, MAX_PENDING, session_id=f"s{i}") for i in range(FANOUT_SESSIONS)]
    for s in sessions:
        hub.connect(s)
        hub.subscribe(s, CHANNEL)
    return hub, sessions, text_frame(encode_message_push(CHANNEL, DATA, 1767225600.123456))


def fan_out_1000() -> Timer:
    hub, sessions, frame = subscribed_hub()

    def op() -> object:
        return hub.fan_out(CHANNEL, frame)

    def reset() -> None:
        drain(sessions)

    if op() != FANOUT_SESSIONS:
        raise RuntimeError("fan_out did not reach every session")
    reset()
    return timed(op, reset)


WINDOW = 15  # delayed publications per write_delay window (5 ms at ~2,000 emits/s measured ~17)


def fan_out_later_window() -> Timer:
    """``WINDOW`` delayed publications (a ``write_delay``) to ``FANOUT_SESSIONS`` sessions,
    then every session taken, as the Flusher's timer does at the window's end."""
    hub, sessions, frame = subscribed_hub()

    def op() -> object:
        for _ in range(WINDOW):
            hub.fan_out(CHANNEL, frame, delay=0.005)
        drain(sessions)
        return None

    op()
    taken = [s.take() for s in sessions]
    if any(taken) or any(s.pending for s in sessions):
        raise RuntimeError("the window's frames were not all taken")
    hub.fan_out(CHANNEL, frame, delay=0.005)
    if any(s.take() != frame for s in sessions):
        raise RuntimeError("a delayed fan_out did not reach every session")
    drain(sessions)
    return timed(op)


def backend_context() -> tuple[Any, list[Session]]:
    """The backend RPC context on a memory-broker node with one session on CHANNEL.

    The one place that knows how rpc's context is built (rpc.py is being rewritten).
    Returns (context, the sessions to drain).
    """
    node = Node(Hub(), MemoryBroker())
    node.start()
    session = Session(NullOutlet(), MAX_PENDING)
    node.connect(session)
    node.subscribe(session, CHANNEL)
    return rpc.BackendContext(node, 255), [session]


def dispatch_emits(batch: int, counted: bool = False) -> Timer:
    """``counted``: with an ``RpcStats`` (METRICS on: calls counted, documents timed)."""
    ctx, sessions = backend_context()
    body = emit_body(CHANNEL, DATA, 1, batch)
    stats = RpcStats() if counted else None

    def op() -> bytes | None:
        return rpc.dispatch(body, rpc.backend_methods, ctx, 1000, stats=stats)

    def reset() -> None:
        drain(sessions)

    answer = orjson.loads(op() or b"null")
    first = answer[0] if batch > 1 else answer
    if not isinstance(first, dict) or first.get("result", {}).get("delivered") != 1:
        raise RuntimeError(f"emit did not deliver: {answer!r:.300}")
    reset()
    return timed(op, reset)


class BenchLink:
    """The Admission side of ``connect``, as the transport's Connection does it minus the
    socket: a fresh protocol per connect, the identity set on the session."""

    def __init__(self, session: Session, node: Node) -> None:
        self.session = session
        self.node = node
        self.protocol = ConnectionProtocol(65536)

    @property
    def connecting(self) -> bool:
        return True

    def upgrade_headers(self) -> tuple[tuple[str, str], ...]:
        return ()

    def admit(self, identity: Identity) -> list[str]:
        s = self.session
        self.node.identify(s, identity.user)
        s.info, s.meta = identity.info, identity.meta
        self.protocol.accept(identity.expires_at)
        return []

    def refuse(self, why: Any) -> None:
        raise RuntimeError(f"connect refused: {why}")

    def extend(self, expires_at: float) -> None:
        pass


def connect_hs256(fast_path: bool = True) -> Timer:
    import jwt

    secret = "benchmark-secret-" + "k" * 32
    verifier = TokenVerifier(hmac_secret=secret, audience="bench", hmac_fast_path=fast_path)
    auth = Authenticator(verifier, ping_interval=25.0)
    session = Session(NullOutlet(), MAX_PENDING)
    node = Node(Hub(), MemoryBroker())
    node.connect(session)
    link = BenchLink(session, node)
    ctx = rpc.ClientContext(node, session, 255, auth, link)
    claims = {"sub": "user-12345", "exp": int(time.time()) + 3600, "aud": "bench", "info": {"name": "Bench"}}
    token = jwt.encode(claims, secret, algorithm="HS256")
    body = orjson.dumps({"jsonrpc": "2.0", "method": "connect", "params": {"token": token}, "id": 1})

    def op() -> bytes | None:
        return rpc.dispatch(body, rpc.connecting_methods, ctx, 1000)

    answer = orjson.loads(op() or b"null")
    if answer.get("result", {}).get("user") != "user-12345":
        raise RuntimeError(f"connect failed: {answer!r:.300}")
    return timed(op)


@dataclass(frozen=True)
class Operation:
    name: str
    description: str
    setup: Callable[[], Timer]
    items: int = 1  # what one operation handles (deliveries, emits), for the per-item figure
    item: str = ""


OPERATIONS = (
    Operation(
        "framing.read_text_frame",
        f"FrameReader: one {CLIENT_FRAME_BYTES}-byte masked client text frame",
        read_text_frame,
    ),
    Operation(
        "hub.fan_out_1000",
        f"Hub.fan_out of a 184-byte push to {FANOUT_SESSIONS:,} sessions (no-op outlet)",
        fan_out_1000,
        FANOUT_SESSIONS,
        "delivery",
    ),
    Operation(
        "rpc.dispatch_emit",
        "rpc.dispatch of one emit (memory broker, 1 subscriber)",
        lambda: dispatch_emits(1),
        1,
        "emit",
    ),
    Operation(
        "rpc.dispatch_batch_100",
        f"rpc.dispatch of a batch of {BATCH} emits (memory broker, 1 subscriber)",
        lambda: dispatch_emits(BATCH),
        BATCH,
        "emit",
    ),
)
# Run only when named with --only (the default set is pinned by tests/test_bench_smoke.py).
EXTRA_OPERATIONS = (
    Operation(
        "auth.connect_hs256",
        "rpc.dispatch of one connect with an HS256 token (verify, accept, answer)",
        connect_hs256,
    ),
    Operation(
        "auth.connect_hs256_pyjwt",
        "the same, every token through PyJWT's decode (the fast path's reference)",
        lambda: connect_hs256(fast_path=False),
    ),
    Operation(
        "hub.fan_out_later_window",
        f"{WINDOW} delayed fan_outs (write_delay) to {FANOUT_SESSIONS:,} sessions, then each taken",
        fan_out_later_window,
        WINDOW * FANOUT_SESSIONS,
        "delivery",
    ),
    Operation(
        "rpc.dispatch_emit_metrics",
        "rpc.dispatch_emit with METRICS on (the call counted, the document timed)",
        lambda: dispatch_emits(1, counted=True),
        1,
        "emit",
    ),
    Operation(
        "rpc.dispatch_batch_100_metrics",
        f"rpc.dispatch_batch_100 with METRICS on ({BATCH} calls counted, the batch timed)",
        lambda: dispatch_emits(BATCH, counted=True),
        BATCH,
        "emit",
    ),
)


# -- measuring -------------------------------------------------------------------------------


@dataclass
class Figure:
    """One operation's result: µs per operation, median of the repeats."""

    name: str
    description: str
    us_per_op: float
    repeats_us: list[float]
    loops: int
    items: int
    item: str
    us_per_item: float


def calibrate(timer: Timer, clock: Clock, target: float) -> int:
    """Loops that take about ``target`` seconds (the calibration runs are the warm-up)."""
    loops = 1
    while True:
        spent = timer(loops, clock)
        if spent >= target / 10 or loops >= 1 << 24:
            return max(1, int(loops * target / max(spent, 1e-9)))
        loops *= 10


def measure(op: Operation, repeat: int, target: float, clock: Clock) -> Figure:
    timer = op.setup()
    loops = calibrate(timer, clock, target)
    repeats: list[float] = []
    enabled = gc.isenabled()
    try:
        for _ in range(repeat):
            gc.collect()
            gc.disable()
            spent = timer(loops, clock)
            gc.enable()
            repeats.append(spent * 1e6 / loops)
    finally:
        if enabled:
            gc.enable()
        else:
            gc.disable()
    median = statistics.median(repeats)
    return Figure(op.name, op.description, median, repeats, loops, op.items, op.item, median / op.items)


def format_table(figures: list[Figure], repeat: int, clock: str) -> str:
    lines = [
        f"{'operation':<26} {'µs/op':>10} {'min':>10} {'max':>10} {'loops':>9}  per item",
    ]
    for f in figures:
        per = f"{f.us_per_item:.4f} µs/{f.item}" if f.items > 1 else ""
        lines.append(
            f"{f.name:<26} {f.us_per_op:>10.3f} {min(f.repeats_us):>10.3f} "
            f"{max(f.repeats_us):>10.3f} {f.loops:>9}  {per}".rstrip()
        )
    lines.append(f"(µs/op: {clock} time, median of {repeat} repeats)")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.micro", description=__doc__.split("\n")[0])
    p.add_argument(
        "--repeat", type=int, default=None, help="repeats per operation (default 5; 2 with --quick)"
    )
    p.add_argument(
        "--target", type=float, default=None, help="seconds per repeat (default 0.3; 0.005 with --quick)"
    )
    p.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="cpu",
        help="cpu: this thread's CPU time (default; other load on the machine does not count); "
        "wall: elapsed time",
    )
    every = ",".join(o.name for o in OPERATIONS + EXTRA_OPERATIONS)
    p.add_argument("--only", help=f"comma-separated, from {every}")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    p.add_argument("--quick", action="store_true", help="smoke run: tiny loops, 2 repeats")
    a = p.parse_args(argv)
    if a.repeat is None:
        a.repeat = 2 if a.quick else 5
    if a.target is None:
        a.target = 0.005 if a.quick else 0.3
    if a.repeat < 1 or a.target <= 0:
        p.error("--repeat must be >= 1 and --target > 0")
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    ops = list(OPERATIONS)
    if a.only:
        names = [n for n in a.only.split(",") if n]
        unknown = sorted(set(names) - {o.name for o in OPERATIONS + EXTRA_OPERATIONS})
        if unknown:
            print(f"micro: unknown operation(s) {unknown}", file=sys.stderr)
            return 2
        ops = [o for o in OPERATIONS + EXTRA_OPERATIONS if o.name in names]
    info = machine_info()
    figures = [measure(op, a.repeat, a.target, CLOCKS[a.clock]) for op in ops]
    if a.json:
        results = [asdict(f) for f in figures]
        doc = {"setup": info, "clock": a.clock, "repeat": a.repeat, "target_s": a.target, "results": results}
        sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    print(describe(info) + f", {info['platform']}, load {' '.join(f'{x:.2f}' for x in info['loadavg'])}")
    print(format_table(figures, a.repeat, a.clock))
    return 0


if __name__ == "__main__":
    sys.exit(main())
