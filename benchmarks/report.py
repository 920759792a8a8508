"""The report: medians per case and server, RocketWS/peer ratios, the text table, the plot.

Works on the JSON form of the runs (``RunResult.as_dict``), so a saved results.json can be
summarised again.
"""

from __future__ import annotations

import math
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .harness import RunResult
from .servers import KNOWN_SERVERS

# extra ratios of medians (numerator, denominator), reported when both servers ran
EXTRA_RATIOS = (
    ("rocketws-redis", "rocketws"),
    ("rocketws-redis", "peer"),
    ("rocketws-deflate", "rocketws"),
    ("rocketws", "rocketws-nometrics"),  # metrics on / off
    ("rocketws-nometrics", "rocketws-baseline"),  # counters alone / before them
    ("rocketws", "rocketws-baseline"),  # everything / before
    ("rocketws-history", "rocketws"),  # the cost of offsets (history on vs off)
    ("rocketws-redis-history", "rocketws-redis"),
    ("rocketws-redis-history", "rocketws-history"),
    ("rocketws", "rocketws-base"),
    ("rocketws-redis-pipe", "rocketws"),
    ("rocketws-redis-w2", "rocketws"),
    ("rocketws-wd1", "rocketws"),
    ("rocketws-wd5", "rocketws"),
    ("rocketws-wd20", "rocketws"),
    ("rocketws-wd5", "rocketws-base-wd5"),
)
# the fields that name a case in the text summary, in this order when present
CASE_LABELS = ("part", "mode", "n", "tls", "m", "b", "c", "size", "rate", "workers")


def pct(sorted_values: list[float], p: float) -> float | None:
    """Nearest-rank percentile of an already sorted list (None when empty)."""
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, math.ceil(p / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, or None when either is missing or b is zero."""
    if a is None or not b:
        return None
    return a / b


def summarize(runs: list[dict[str, Any]], results: Sequence[type[RunResult]]) -> list[dict[str, Any]]:
    """Median of each metric per (scenario, case, server), with RocketWS/peer ratios.

    ``results`` are the scenarios' result types, in report order; each names its case
    fields and metrics.  ``ratio`` is rocketws/peer; ``ratios`` holds the others of
    EXTRA_RATIOS that apply (e.g. ``"rocketws-redis/rocketws"``: Redis broker vs memory).
    """
    out: list[dict[str, Any]] = []
    for result in results:
        scenario, keys = result.SCENARIO, result.CASE
        cases: dict[tuple[Any, ...], dict[str, list[dict[str, Any]]]] = {}
        for r in runs:
            if r["scenario"] != scenario:
                continue
            case = tuple(r[k] for k in keys)
            cases.setdefault(case, {}).setdefault(r["server"], []).append(r)
        for case, by_server in cases.items():
            row: dict[str, Any] = {"scenario": scenario, **dict(zip(keys, case, strict=True))}
            for metric in result.METRICS:
                med: dict[str, float | None] = {}
                for server, rs in by_server.items():
                    vals = [r[metric] for r in rs if r.get(metric) is not None]
                    med[server] = statistics.median(vals) if vals else None
                if all(v is None for v in med.values()):
                    continue  # e.g. redis_us_per_delivery without rocketws-redis
                entry: dict[str, Any] = {"median": med}
                main = ratio(med.get("rocketws"), med.get("peer"))
                if main is not None:
                    entry["ratio"] = main
                extra = {f"{x}/{y}": ratio(med.get(x), med.get(y)) for x, y in EXTRA_RATIOS}
                ratios = {k: v for k, v in extra.items() if v is not None}
                if ratios:
                    entry["ratios"] = ratios
                row[metric] = entry
            row["runs"] = {s: len(rs) for s, rs in by_server.items()}
            row.update(result.summary_extras(by_server))
            out.append(row)
    return out


def format_summary(summary: list[dict[str, Any]]) -> str:
    lines = []
    for row in summary:
        case = ", ".join(f"{k}={row[k]}" for k in CASE_LABELS if k in row)
        lines.append(f"{row['scenario']} ({case}; runs {row['runs']})")
        extras = []
        for metric, entry in row.items():
            if metric in ("scenario", "runs") or metric in CASE_LABELS:
                continue
            if not isinstance(entry, dict) or "median" not in entry:
                extras.append(metric)
                continue
            med = entry["median"]
            parts = [f"{s} {fmt(v)}" for s, v in med.items()]
            text = f"  ratio {entry['ratio']:.2f}" if "ratio" in entry else ""
            text += "".join(f"  {k} {v:.2f}" for k, v in entry.get("ratios", {}).items())
            lines.append(f"  {metric:<22} " + "  ".join(parts) + text)
        for extra in extras:
            lines.append(f"  {extra:<22} {row[extra]}")
    return "\n".join(lines)


def _med(row: dict[str, Any], metric: str, server: str) -> float | None:
    entry = row.get(metric)
    if not isinstance(entry, dict):
        return None
    value = entry.get("median", {}).get(server)
    return None if value is None else float(value)


def format_sizing(summary: list[dict[str, Any]], server: str = "rocketws") -> str:
    """What a machine holds, from ``server``'s medians: a table an operator sizes by.

    Per-core throughput is 1 / (server CPU per delivery): what one fully busy core
    delivers, the subscribers' own cost not included.
    """
    rows: list[tuple[str, str, str]] = []
    for row in summary:
        sc = row["scenario"]
        if sc == "fanout":
            us = _med(row, "us_per_delivery", server)
            if us:
                case = f"fan-out N={row['n']:,} B={row['b']} C={row['c']}"
                rows.append((case, f"{us:.2f} µs CPU/delivery", f"~{1e6 / us:,.0f} deliveries/s per core"))
        elif sc == "idle" and not row.get("tls"):
            per = _med(row, "bytes_per_connection", server)
            if per:
                rows.append(
                    (
                        f"idle N={row['n']:,}",
                        f"{per:,.0f} B/connection",
                        f"~{2**30 / per:,.0f} connections per GiB",
                    )
                )
        elif sc == "latency":
            p50, p99 = _med(row, "p50_ms", server), _med(row, "p99_ms", server)
            if p50 is not None and p99 is not None:
                rows.append(
                    (f"latency N={row['n']:,} at {row['rate']:g}/s", f"p50 {p50:.1f} ms", f"p99 {p99:.1f} ms")
                )
        elif sc == "scale":
            name = "rocketws-redis"
            conns, per = _med(row, "connected", name), _med(row, "bytes_per_connection", name)
            emit = _med(row, "emit_ms", name)
            if conns:
                rows.append(
                    (
                        f"scale {row['workers']} workers on Redis",
                        f"{conns:,.0f} connections, {per or 0:,.0f} B each",
                        f"one emit to all in {emit or 0:,.0f} ms",
                    )
                )
    if not rows:
        return ""
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    head = ("case", "measured", "so this machine does")
    widths = [max(w, len(h)) for w, h in zip(widths, head, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def fmt(v: float | None) -> str:
    if v is None:
        return "-"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3f}"


def write_plot(summary: list[dict[str, Any]], path: Path) -> bool:
    """Bar charts of fan-out µs/delivery and deliveries/s per B, RocketWS vs peer."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[bench]'); no plot", file=sys.stderr)
        return False
    rows = [r for r in summary if r["scenario"] == "fanout"]
    ingress = [r for r in summary if r["scenario"] == "ingress"]
    if not rows and not ingress:
        return False
    panels = [
        ("us_per_delivery", "server CPU µs per delivery (lower is better)", rows),
        ("deliveries_per_s", "deliveries/s (higher is better)", rows),
        ("emits_per_s", "HTTP ingress emits/s (higher is better)", ingress),
    ]
    panels = [p for p in panels if p[2]]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    colors = {
        "rocketws": "#d62728",
        "rocketws-redis": "#ff7f0e",
        "rocketws-redis-w2": "#8c564b",
        "peer": "#1f77b4",
    }
    for ax, (metric, title, rs) in zip(axes[0], panels, strict=True):
        labels = [f"B={r['b']} C={r['c']}" if "c" in r else f"B={r['b']}" for r in rs]
        present = {s for r in rs for s in r[metric]["median"]}
        servers = [s for s in KNOWN_SERVERS if s in present]
        width = 0.8 / max(1, len(servers))
        for k, s in enumerate(servers):
            vals = [r[metric]["median"].get(s) or 0 for r in rs]
            xs = [i + k * width for i in range(len(rs))]
            bars = ax.bar(xs, vals, width, label=s, color=colors.get(s))
            ax.bar_label(bars, labels=[fmt(v) for v in vals], fontsize=7)
        ax.set_xticks([i + width * (len(servers) - 1) / 2 for i in range(len(rs))], labels)
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=8)
    fig.suptitle("RocketWS (memory / Redis broker) vs websockets peer (medians)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
