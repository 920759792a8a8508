"""``manage.py bench``: the benchmark as an operator's sizing tool.

The same scenarios and options as ``python -m benchmarks.bench`` with defaults chosen to
answer "how much does this machine hold" in a few minutes: RocketWS alone (add
``--servers rocketws,peer`` for the side-by-side), fan-out at B=1 and B=10, 10,000 idle
connections, latency at 1,000 and 10,000 subscribers, three runs each.  A live progress
bar on a terminal, then the summary (medians, ratios), a sizing table (µs per delivery ->
deliveries/s per core, bytes per connection -> connections per GiB, latency) and the plot.
``--scenarios fanout,idle,latency,scale`` adds the 100,000-connection run on Redis
(a few minutes more; ``--scenarios scale`` runs it alone).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from . import bench
from .report import format_sizing

DEFAULTS = (
    "--servers=rocketws",
    "--scenarios=fanout,idle,latency",
    "--fanout-concurrency=1",
    "--latency-m=20",
)


def main(argv: Sequence[str] = ()) -> int:
    """Run the benchmark with the sizing defaults (later options win); print the table."""
    args = [*DEFAULTS, *argv]
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
    holder: dict[str, object] = {}
    status = bench.main(args, report_hook=holder.update)
    summary = holder.get("summary")
    if status == 0 and isinstance(summary, list):
        table = format_sizing(summary)
        if table:
            print("\nsizing (medians of RocketWS; one core = one RocketWS process):")
            print(table)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
