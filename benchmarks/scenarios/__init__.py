"""One module per scenario, each with its typed result and a ``run(bench)`` function.

``SCENARIOS`` maps each name of ``benchmarks.config.SCENARIOS`` (the ``--scenarios``
values, in the order they run and are reported) to its ``Scenario``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .. import config
from ..harness import Bench, RunResult
from . import compression, fanout, idle, ingress, latency, recovery, slow_consumer


@dataclass(frozen=True)
class Scenario:
    result: type[RunResult]
    run: Callable[[Bench], Sequence[RunResult]]


SCENARIOS: dict[str, Scenario] = {
    s.result.SCENARIO: s
    for s in (
        Scenario(fanout.FanoutRun, fanout.run),
        Scenario(idle.IdleRun, idle.run),
        Scenario(ingress.IngressRun, ingress.run),
        Scenario(latency.LatencyRun, latency.run),
        Scenario(slow_consumer.SlowConsumerRun, slow_consumer.run),
        Scenario(compression.CompressionRun, compression.run),
        Scenario(recovery.RecoveryRun, recovery.run),
    )
}
if tuple(SCENARIOS) != config.SCENARIOS:  # one list of names, checked at import
    raise ImportError(f"benchmarks.scenarios {tuple(SCENARIOS)} != config.SCENARIOS {config.SCENARIOS}")
