"""What one benchmark invocation runs: the scenarios, the servers and every size."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from .servers import SERVER_NAMES

# in the order they run and are reported; each is a module in benchmarks/scenarios/
SCENARIOS = ("fanout", "idle", "ingress", "latency", "slow", "compression", "recovery", "split", "scale")
NEEDS_REDIS = (
    "recovery",
    "scale",
)  # they start their own redis-server; not in --quick (smoke runs are separate)
QUICK_SCENARIOS = tuple(s for s in SCENARIOS if s not in NEEDS_REDIS)


@dataclass
class Config:
    servers: list[str] = field(default_factory=lambda: list(SERVER_NAMES))
    scenarios: list[str] = field(default_factory=lambda: ["fanout", "idle", "ingress", "latency"])
    repeat: int = 3
    workers: int = 2
    size: int = 100  # bytes of the emitted data string (~184-byte push frame at 100)
    fanout_n: int = 1000
    fanout_m: int = 1000
    batches: list[int] = field(default_factory=lambda: [1, 10])
    fanout_concurrency: list[int] = field(default_factory=lambda: [1, 4])
    # emits/s, each case of batches x concurrency once per rate; 0: as fast as C requests
    # in flight go (the default and the figures' meaning); > 0: requests paced at
    # rate / B per second over the C connections, latency sampled (fanout_latency_every)
    fanout_rates: list[float] = field(default_factory=lambda: [0.0])
    fanout_latency_every: int = 10  # paced runs: record latency on every k-th subscriber
    # s; > 0: subscribers not sampling latency are read this often, not on every event (one
    # recv takes what arrived meanwhile, and no server write wakes the load generator)
    read_interval: float = 0.0
    idle_n: int = 10000
    idle_tls: bool = False  # idle also over wss:// (RocketWS servers): the TLS cost per connection
    ingress_m: int = 20000
    ingress_batch: int = 100
    ingress_concurrency: int = 4
    latency_n: list[int] = field(default_factory=lambda: [1000, 10000])
    latency_rate: float = 50.0  # emits/s, capped by latency_budget / N
    latency_budget: float = 20000.0  # deliveries/s the subscriber processes can take in
    latency_m: int = 40
    slow_n: int = 100
    slow_m: int = 4000
    slow_size: int = 2000
    compression_n: int = 1000  # subscribers (fan-out part, compression on vs off)
    compression_m: int = 500  # emits of a ~1 KB JSON push per run
    compression_idle_n: int = 5000  # connections (idle part)
    recovery_n: int = 1000  # reconnecting clients (recovery scenario)
    recovery_m: int = 300  # publications each one recovers
    recovery_concurrency: int = 50  # clients reconnecting at once
    split_n: int = 10_000  # subscribers of the one-emit CPU split (user vs kernel)
    split_emits: int = 10  # emits per run (utime/stime tick at 10 ms)
    split_perf: bool = False  # also sample the server with `perf record` (DSO shares)
    scale_n: int = 100_000  # subscribed connections (the scale scenario)
    scale_workers: int = 6  # server processes on Redis (--workers)
    scale_clients: int = 7  # subscriber processes, one loopback source address each
    scale_emits: int = 3  # single emits to everyone (median)
    scale_rate: float = 10.0  # emits/s of the steady fan-out
    scale_seconds: float = 10.0
    scale_write_delay: float = 0.0  # the server's WRITE_DELAY (s) during the scale run
    scale_repeat: int = 1  # servers started afresh (each run connects N again)
    timeout: float = 120.0  # seconds without progress before a run is given up
    out: str | None = "benchmarks/results"
    plot: bool = True
    pin: bool = True
    quiet: bool = False

    @classmethod
    def quick(cls, **kw: Any) -> Config:
        """Tiny sizes: every scenario but recovery, both servers, in well under a minute."""
        base: dict[str, Any] = dict(
            repeat=1,
            workers=1,
            fanout_n=20,
            fanout_m=40,
            fanout_concurrency=[1, 2],
            idle_n=50,
            ingress_m=200,
            ingress_batch=20,
            latency_n=[20],
            latency_rate=200.0,
            latency_m=20,
            slow_n=5,
            slow_m=200,
            slow_size=200,
            compression_n=20,
            compression_m=40,
            compression_idle_n=50,
            recovery_n=20,
            recovery_m=30,
            split_n=20,
            split_emits=3,
            scale_n=200,
            scale_workers=2,
            scale_clients=2,
            scale_emits=2,
            scale_seconds=0.5,
            timeout=20.0,
            scenarios=list(QUICK_SCENARIOS),
        )
        base.update(kw)
        return replace(cls(), **base)
