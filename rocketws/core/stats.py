"""What a node counts, in plain ints: the figures behind ``/metrics`` and ``info``.

The hot paths only add to attributes and dict entries of these objects (no locks, no
library calls: one process, one event loop); ``process/metrics.py`` reads them when
``/metrics`` is scraped and turns them into Prometheus families.  Nothing here knows
Prometheus.

Label values stay bounded: JSON-RPC figures are kept per method of the tables (a name
nobody declared is counted as ``UNKNOWN``), disconnects per close code.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

__all__ = [
    "LATENCY_BUCKETS",
    "UNKNOWN",
    "INVALID",
    "PARSE",
    "Histogram",
    "RpcStats",
    "BrokerStats",
    "ProxyStats",
    "NodeStats",
    "SOURCES",
    "OTHER_CODE",
]

LATENCY_BUCKETS = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
"""Upper bounds (seconds) of the latency histograms; a last bucket is +Inf."""

UNKNOWN = "unknown"  # the method label of a call to a method not in the table
INVALID = "invalid"  # ... of an entry that is not a request (-32600)
PARSE = "parse"  # ... of a document that is not JSON (-32700)

OTHER_CODE = "other"  # the close-code label of a code a client chose (4000-4999 not ours, ...)

SOURCES = ("http", "redis", "send_data")
"""Where publications come from: the MessagesSource, the Redis message source, clients."""


class Histogram:
    """Observations in fixed buckets: ``counts[i]`` holds values <= ``bounds[i]`` (and
    above the previous bound); the last count is above every bound (Prometheus ``le``)."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations <= it) for every bucket, +Inf last."""
        out, total = [], 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += n
            out.append((bound, total))
        return out

    def merge(self, other: Histogram) -> None:
        """Add ``other``'s observations (same bounds)."""
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        self.sum += other.sum

    def snapshot(self) -> dict[str, Any]:
        return {"counts": list(self.counts), "sum": self.sum}


class RpcStats:
    """One endpoint's JSON-RPC figures: calls per method, errors per (method, code),
    the latency of single-call documents per method, and of batch documents.

    ``calls`` counts every call of a declared method, batched or not, notifications too;
    ``latency`` times a document holding one call (what a client or backend waits for);
    a batch is timed whole in ``batches``.
    """

    __slots__ = ("calls", "errors", "latency", "batches")

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.errors: dict[tuple[str, int], int] = {}
        self.latency: dict[str, Histogram] = {}
        self.batches = Histogram()

    def error(self, method: str, code: int) -> None:
        key = (method, int(code))
        self.errors[key] = self.errors.get(key, 0) + 1

    def observe(self, method: str, seconds: float) -> None:
        histogram = self.latency.get(method)
        if histogram is None:
            histogram = self.latency[method] = Histogram()
        histogram.counts[bisect_left(histogram.bounds, seconds)] += 1  # Histogram.observe, inlined
        histogram.sum += seconds


class BrokerStats:
    """A broker's figures: publish latency (to the broker, not the fan-out), failed
    publishes, reconnects, and whether it is reachable now."""

    __slots__ = ("publish", "errors", "reconnects", "connected")

    def __init__(self) -> None:
        self.publish = Histogram()
        self.errors = 0
        self.reconnects = 0
        self.connected = True


class ProxyStats:
    """The proxies' figures: calls per (kind, pattern), errors per (kind, pattern, code),
    latency per kind.  ``kind``: ``rpc``, ``subscribe``, ``publish``, ``connect``;
    ``pattern``: the ``PROXY["RPC"]`` route's pattern (``*`` for ``RPC_URL``), else the
    kind: bounded by the configuration, never the client's method names."""

    __slots__ = ("calls", "errors", "latency")

    def __init__(self) -> None:
        self.calls: dict[tuple[str, str], int] = {}
        self.errors: dict[tuple[str, str, int], int] = {}
        self.latency: dict[str, Histogram] = {}

    def observe(self, kind: str, pattern: str, seconds: float, code: int | None) -> None:
        """One proxied call that took ``seconds`` and failed with ``code`` (None: ok);
        the ``transports.proxies.Observer`` signature."""
        key = (kind, pattern)
        self.calls[key] = self.calls.get(key, 0) + 1
        if code is not None:
            error = (kind, pattern, int(code))
            self.errors[error] = self.errors.get(error, 0) + 1
        histogram = self.latency.get(kind)
        if histogram is None:
            histogram = self.latency[kind] = Histogram()
        histogram.observe(seconds)


class NodeStats:
    """Everything one node counts (one per process; the Redis source's node shares it).

    ``publications``: per source in ``SOURCES``.  ``deliveries``: frames of publications
    queued to sessions.  ``messages_*``/``bytes_*``: WebSocket messages and bytes
    (received: text messages and socket bytes read; sent: deliveries and JSON-RPC
    responses queued, socket bytes written).  ``disconnects``: closed connections per
    close code (1006 when the TCP connection ended without a close frame).
    ``slow_consumers``: closes with 4008 per reason (``outbox``, ``write_timeout``).
    ``rpc``: per endpoint (``websocket``, ``http``, ``redis``).  ``proxy``: calls to
    the application (RPC, subscribe, publish and connect proxies).
    """

    __slots__ = (
        "publications",
        "deliveries",
        "messages_received",
        "bytes_received",
        "responses_sent",
        "bytes_sent",
        "disconnects",
        "slow_consumers",
        "rpc",
        "proxy",
        "started",
    )

    def __init__(self, started: float = 0.0) -> None:
        self.publications = dict.fromkeys(SOURCES, 0)
        self.deliveries = 0
        self.messages_received = 0
        self.bytes_received = 0
        self.responses_sent = 0
        self.bytes_sent = 0
        self.disconnects: dict[int | str, int] = {}
        self.slow_consumers = {"outbox": 0, "write_timeout": 0}
        self.rpc = {"websocket": RpcStats(), "http": RpcStats(), "redis": RpcStats()}
        self.proxy = ProxyStats()
        self.started = started  # Unix time the node started (for uptime)

    @property
    def messages_sent(self) -> int:
        return self.deliveries + self.responses_sent

    def disconnected(self, code: int | str) -> None:
        """Count a closed connection; ``code``: its close code, or ``OTHER_CODE``."""
        self.disconnects[code] = self.disconnects.get(code, 0) + 1
