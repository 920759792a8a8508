"""Profile a server under the fan-out load with py-spy (``pip install py-spy``; needs ptrace).

Starts the server pinned like ``bench`` does, connects N subscribers, then records the
server with ``py-spy record`` while emits run, and prints the functions with the most
samples (self and cumulative). The raw collapsed stacks are kept for a flame graph.

Usage::

    python -m benchmarks.profile --server rocketws --fanout-n 1000 --batch 1 --duration 10
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from . import httpload
from .harness import CHANNEL, Subscribers, emit_bodies
from .servers import Server, cpu_plan
from .wsclient import raise_nofile_limit


def top_frames(collapsed: Path, limit: int = 25) -> tuple[int, list[tuple[str, int]], list[tuple[str, int]]]:
    """(total samples, top self frames, top cumulative frames) of a collapsed-stack file."""
    own: Counter[str] = Counter()
    cum: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        own[frames[-1]] += n
        for f in set(frames):
            cum[f] += n
    return total, own.most_common(limit), cum.most_common(limit)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__.split("\n")[0])
    p.add_argument("--server", default="rocketws")
    p.add_argument("--fanout-n", type=int, default=1000)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--size", type=int, default=100)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--rate", type=int, default=250, help="py-spy samples/s")
    p.add_argument("--native", action="store_true", help="include C frames (py-spy --native)")
    p.add_argument("--scenario", choices=("fanout", "ingress"), default="fanout")
    p.add_argument("--out", default="benchmarks/results/profile.txt")
    a = p.parse_args(argv)
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(pyspy).exists():
        print("py-spy is not installed: pip install py-spy", file=sys.stderr)
        return 2
    raise_nofile_limit()
    server_cpus, load_cpus = cpu_plan()
    srv = Server(a.server, cpus=server_cpus).start()
    subs = Subscribers(2, load_cpus)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        n = a.fanout_n if a.scenario == "fanout" else 0
        if n:
            subs.connect("p", srv, n)
        cmd = [
            pyspy,
            "record",
            "-p",
            str(srv.pid),
            "-d",
            str(int(a.duration)),
            "-r",
            str(a.rate),
            "-f",
            "raw",
            "-o",
            str(out),
            "--nonblocking",
        ]
        if a.native:
            cmd.append("--native")
        spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        data = "x" * a.size
        channel = CHANNEL if n else "nobody"
        deadline = time.monotonic() + a.duration
        cpu0 = srv.cpu()
        emits = 0
        while time.monotonic() < deadline and spy.poll() is None:
            res = httpload.run_requests(
                srv.host,
                srv.http_port,
                emit_bodies(channel, data, a.batch),
                50,
                concurrency=a.concurrency,
            )
            emits += res.requests * a.batch
        cpu = srv.cpu() - cpu0
        _, err = spy.communicate(timeout=60)
        print(
            f"{a.server}: {emits} emits, {emits * n} deliveries, server CPU {cpu.seconds:.2f} s"
            + (
                f", {cpu.seconds * 1e6 / (emits * n):.2f} µs/delivery"
                if n
                else f", {cpu.seconds * 1e6 / max(1, emits):.1f} µs/emit"
            )
        )
        if spy.returncode:
            print(err.decode(errors="replace"), file=sys.stderr)
            return 1
        total, own, cum = top_frames(out)
        print(f"{total} samples; raw stacks in {out}")
        print("self:")
        for f, c in own:
            print(f"  {100 * c / total:5.1f}%  {f}")
        print("cumulative:")
        for f, c in cum:
            print(f"  {100 * c / total:5.1f}%  {f}")
    finally:
        subs.close()
        srv.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
