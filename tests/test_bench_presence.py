"""Smoke run of benchmarks/presence.py (presence's cost on subscribe/unsubscribe on
Redis): tiny sizes, so the tool never rots.  Figures are not asserted, only that every
case ran every pair and the report is sane."""

from __future__ import annotations

import math
import shutil

import pytest

from benchmarks import presence


def test_bench_presence_runs_every_case_and_reports_ratios() -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not on PATH (run: bash scripts/sysdeps.sh)")
    result = presence.run(conns=2, ops=10, repeat=1)
    assert [(r["case"], r["pairs"]) for r in result["runs"]] == [("plain", 20), ("p", 20), ("j", 20)]
    assert result["ratios"]["plain"]["server_us_per_pair"] == 1.0
    for case in presence.CASES:
        medians = result["medians"][case]
        assert medians["server_us_per_pair"] > 0 and medians["pairs_per_s"] > 0, (case, medians)
        assert math.isfinite(medians["redis_us_per_pair"]) and medians["redis_us_per_pair"] >= 0
    table = presence.format_summary(result)
    assert table.count("\n| ") == 4  # the header row and three cases
