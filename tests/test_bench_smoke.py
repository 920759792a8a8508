"""Smoke run of the benchmark (benchmarks/bench.py): every scenario, tiny sizes, both
servers, so the tool never rots. Figures are not asserted, only that the report is sane.

A second tiny run covers ``rocketws-redis`` (RocketWS on the Redis broker with its own
redis-server); it is skipped only when no ``redis-server`` is on PATH (``make test``
installs one).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

if os.environ.get("CI"):  # `make test` installs the bench extras: never skip in CI
    import aiohttp  # noqa: F401
else:
    pytest.importorskip(
        "aiohttp", reason="the websockets peer needs the bench extras: pip install -e '.[bench]'"
    )

from benchmarks import bench, runner  # noqa: E402
from benchmarks.config import QUICK_SCENARIOS, Config  # noqa: E402
from benchmarks.report import pct  # noqa: E402

SERVERS = ["rocketws", "peer"]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench")
    cfg = Config.quick(out=str(out), quiet=True)
    started = time.monotonic()
    rep = runner.run(cfg)
    rep["_elapsed"] = time.monotonic() - started
    rep["_out"] = out
    return rep


def runs(report: dict[str, Any], scenario: str, server: str) -> list[dict[str, Any]]:
    return [r for r in report["runs"] if r["scenario"] == scenario and r["server"] == server]


def test_bench_quick_run_finishes_well_under_a_minute(report: dict[str, Any]) -> None:
    assert report["_elapsed"] < 50


@pytest.mark.parametrize("server", SERVERS)
def test_bench_fanout_delivers_every_push_and_reports_cost(report: dict[str, Any], server: str) -> None:
    rs = runs(report, "fanout", server)
    assert sorted((r["b"], r["c"]) for r in rs) == [(1, 1), (1, 2), (10, 1), (10, 2)]
    for r in rs:
        assert r["complete"] and r["deliveries"] == r["n"] * r["m"]
        assert r["http_errors"] == 0
        assert 0 < r["us_per_delivery"] < 10_000
        assert r["deliveries_per_s"] > 0
        assert 150 < r["frame_bytes"] < 220  # ~184-byte push at size=100


@pytest.mark.parametrize("server", SERVERS)
def test_bench_idle_counts_every_connection(report: dict[str, Any], server: str) -> None:
    (r,) = runs(report, "idle", server)
    assert r["health_connections"] == r["n"]
    assert r["rss_after_kb"] > 0 and math.isfinite(r["bytes_per_connection"])
    assert r["connects_per_s"] > 0


@pytest.fixture(scope="module")
def tls_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    if shutil.which("openssl") is None:
        pytest.skip("the TLS idle run makes its certificate with the openssl CLI")
    out = tmp_path_factory.mktemp("bench-tls")
    cfg = Config.quick(
        out=str(out), quiet=True, scenarios=["idle"], servers=["rocketws"], idle_tls=True, plot=False
    )
    return runner.run(cfg)


def test_bench_idle_over_tls_counts_every_connection_in_both_cases(tls_report: dict[str, Any]) -> None:
    rs = {r["tls"]: r for r in runs(tls_report, "idle", "rocketws")}
    assert set(rs) == {False, True}
    for r in rs.values():
        assert r["health_connections"] == r["n"]
        assert r["rss_after_kb"] > 0 and math.isfinite(r["bytes_per_connection"])
        assert r["connects_per_s"] > 0
    assert {row["tls"] for row in tls_report["summary"] if row["scenario"] == "idle"} == {False, True}


@pytest.mark.parametrize("server", SERVERS)
def test_bench_ingress_single_and_batched(report: dict[str, Any], server: str) -> None:
    rs = {r["b"]: r for r in runs(report, "ingress", server)}
    assert set(rs) == {1, report["config"]["ingress_batch"]}
    for b, r in rs.items():
        assert r["http_errors"] == 0
        assert r["emits"] == r["requests"] * b
        assert r["emits_per_s"] > 0
        # The aiohttp peer's executor threads come and go: schedstat (live threads only)
        # can then go backwards and the tick fallback rounds a tiny run down to 0.
        assert r["us_per_emit"] > 0 or (server == "peer" and r["us_per_emit"] == 0)


@pytest.mark.parametrize("server", SERVERS)
def test_bench_latency_has_ordered_percentiles(report: dict[str, Any], server: str) -> None:
    (r,) = runs(report, "latency", server)
    assert r["complete"] and r["samples"] == r["expected"]
    assert 0 < r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"] <= r["max_ms"] < 10_000
    assert r["p50_ms"] <= r["completion_p50_ms"] <= r["completion_p99_ms"]


@pytest.mark.parametrize("server", SERVERS)
def test_bench_slow_consumer_does_not_hold_back_readers(report: dict[str, Any], server: str) -> None:
    (r,) = runs(report, "slow", server)
    assert r["all_delivered"] and r["http_errors"] == 0


def test_bench_summary_has_medians_and_ratios(report: dict[str, Any]) -> None:
    rows = {(row["scenario"], row.get("b")): row for row in report["summary"]}
    row = next(r for r in report["summary"] if r["scenario"] == "fanout" and r["b"] == 10)
    assert set(row["us_per_delivery"]["median"]) == set(SERVERS)
    assert row["us_per_delivery"]["ratio"] > 0
    assert {s for s, _ in rows} == set(QUICK_SCENARIOS)
    assert report["machine"]["nproc"] >= 1 and report["machine"]["python"]


def test_bench_writes_results_file_and_plot(report: dict[str, Any]) -> None:
    out: Path = report["_out"]
    saved = json.loads((out / "results.json").read_text())
    assert len(saved["runs"]) == len(report["runs"])
    if importlib.util.find_spec("matplotlib") is not None:
        assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert pct(values, 50) == 50.0
    assert pct(values, 99) == 99.0
    assert pct([], 50) is None


def test_bench_quick_flag_keeps_explicit_options() -> None:
    cfg = bench.parse_args(["--quick", "--fanout-n", "7", "--batches", "1,5", "--no-plot"])
    assert cfg.fanout_n == 7 and cfg.batches == [1, 5] and cfg.plot is False
    assert cfg.fanout_concurrency == Config.quick().fanout_concurrency
    assert cfg.idle_n == Config.quick().idle_n


# -- micro-benchmarks of the core -------------------------------------------------------

MICRO_OPERATIONS = {
    "framing.read_text_frame",
    "hub.fan_out_1000",
    "rpc.dispatch_emit",
    "rpc.dispatch_batch_100",
}


def run_micro(*args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.micro", "--quick", *args],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_micro_quick_json_has_a_positive_figure_per_operation() -> None:
    doc = json.loads(run_micro("--json"))
    assert {r["name"] for r in doc["results"]} == MICRO_OPERATIONS
    for r in doc["results"]:
        figures = [r["us_per_op"], r["us_per_item"], *r["repeats_us"]]
        assert all(isinstance(v, float) and math.isfinite(v) and v > 0 for v in figures), r
        assert len(r["repeats_us"]) == doc["repeat"] and r["loops"] >= 1
    assert doc["setup"]["python"] and doc["setup"]["commit"]


def test_micro_quick_table_lists_every_operation_with_positive_figures() -> None:
    lines = run_micro().splitlines()
    assert lines[0].startswith("machine: ") and "Python " in lines[0]
    rows = {line.split()[0]: line.split()[1:5] for line in lines[2:] if line.split()[0] in MICRO_OPERATIONS}
    assert set(rows) == MICRO_OPERATIONS
    for name, (median, low, high, loops) in rows.items():
        assert 0 < float(low) <= float(median) <= float(high), name
        assert int(loops) >= 1


def test_micro_delayed_fan_out_window_runs_when_named() -> None:
    doc = json.loads(run_micro("--json", "--only", "hub.fan_out_later_window"))
    (result,) = doc["results"]
    assert result["name"] == "hub.fan_out_later_window" and result["items"] == 15_000
    assert math.isfinite(result["us_per_item"]) and result["us_per_item"] > 0


def test_micro_connect_operations_run_when_named() -> None:
    doc = json.loads(run_micro("--json", "--only", "auth.connect_hs256,auth.connect_hs256_pyjwt"))
    figures = {r["name"]: r["us_per_op"] for r in doc["results"]}
    assert set(figures) == {"auth.connect_hs256", "auth.connect_hs256_pyjwt"}
    assert all(math.isfinite(v) and v > 0 for v in figures.values()), figures


def test_connect_cpu_tiny_run_reports_both_cases_for_both_arrivals() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.connect_cpu", "--n", "20", "--repeat", "1", "--in-flight", "8"],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("N=20 connections per case")
    assert [x for x in lines if not x.startswith(" ")][1:] == ["serial (1 at once):", "burst (8 at once):"]
    for label in ("upgrade + ping", "upgrade + connect", "connect - ping"):
        values = [float(x.split("µs")[0].split()[-1]) for x in lines if x.strip().startswith(label)]
        assert len(values) == 2 and all(math.isfinite(v) for v in values), (label, lines)
        if label != "connect - ping":
            assert all(v > 0 for v in values), (label, lines)


# -- RocketWS on the Redis broker ---------------------------------------------------------

needs_redis = pytest.mark.skipif(  # never skipped in CI, where `make test` installs it
    shutil.which("redis-server") is None and not os.environ.get("CI"),
    reason="redis-server not on PATH (bash scripts/sysdeps.sh)",
)


def quick_report(tmp_path_factory: pytest.TempPathFactory, name: str, **options: Any) -> dict[str, Any]:
    """A quick run with ``options`` (default: no plot, one concurrency), timed in ``_elapsed``."""
    out = tmp_path_factory.mktemp(name)
    cfg = Config.quick(
        **{"out": str(out), "quiet": True, "plot": False, "fanout_concurrency": [1], **options}
    )
    started = time.monotonic()
    rep = runner.run(cfg)
    rep["_elapsed"] = time.monotonic() - started
    return rep


@pytest.fixture(scope="module")
def redis_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return quick_report(
        tmp_path_factory,
        "bench-redis",
        servers=["rocketws", "rocketws-redis"],
        scenarios=["fanout", "ingress"],
        ingress_m=100,
    )


@needs_redis
def test_bench_redis_fanout_delivers_and_reports_redis_cpu(redis_report: dict[str, Any]) -> None:
    assert redis_report["_elapsed"] < 30
    mem = runs(redis_report, "fanout", "rocketws")
    red = runs(redis_report, "fanout", "rocketws-redis")
    assert sorted(r["b"] for r in red) == sorted(r["b"] for r in mem) == [1, 10]
    for r in red:
        assert r["complete"] and r["deliveries"] == r["n"] * r["m"] and r["http_errors"] == 0
        assert r["redis_cpu_s"] > 0  # every emit went through redis-server
        assert r["total_us_per_delivery"] == pytest.approx(r["us_per_delivery"] + r["redis_us_per_delivery"])
        assert r["deliveries_per_s"] > 0
    for r in mem:
        assert r["redis_cpu_s"] is None and r["total_us_per_delivery"] == r["us_per_delivery"]


@needs_redis
def test_bench_redis_ingress_and_ratio_vs_memory(redis_report: dict[str, Any]) -> None:
    for r in runs(redis_report, "ingress", "rocketws-redis"):
        assert r["http_errors"] == 0 and r["emits"] == r["requests"] * r["b"]
        assert r["total_us_per_emit"] >= r["us_per_emit"] > 0
    row = next(r for r in redis_report["summary"] if r["scenario"] == "fanout" and r["b"] == 10)
    assert set(row["us_per_delivery"]["median"]) == {"rocketws", "rocketws-redis"}
    assert row["total_us_per_delivery"]["ratios"]["rocketws-redis/rocketws"] > 0
    assert set(row["redis_us_per_delivery"]["median"]) == {"rocketws", "rocketws-redis"}
    assert redis_report["machine"]["redis_server"]


@needs_redis
def test_bench_redis_server_is_stopped_afterwards(tmp_path: Path) -> None:
    from benchmarks.servers import Server

    srv = Server("rocketws-redis").start()
    assert srv.redis is not None
    redis_pid = srv.redis.pid
    assert srv.health()["connections"] == 0
    assert srv.redis_cpu_ns() is not None
    assert "Traceback" not in srv.log_tail(1 << 30)
    srv.cleanup()
    assert srv.redis is None
    with pytest.raises(ProcessLookupError):
        os.kill(redis_pid, 0)  # reaped: the PID no longer exists


def test_bench_compression_compares_deflate_on_and_off(report: dict[str, Any]) -> None:
    on, off = runs(report, "compression", "rocketws-deflate"), runs(report, "compression", "rocketws")
    fanout = {
        s: sorted((r["b"], r) for r in rs if r["part"] == "fanout") for s, rs in (("on", on), ("off", off))
    }
    assert [b for b, _ in fanout["on"]] == [b for b, _ in fanout["off"]] == [1, 10]
    for (_, r_on), (_, r_off) in zip(fanout["on"], fanout["off"], strict=True):
        assert r_on["complete"] and r_off["complete"] and r_on["deliveries"] == r_on["n"] * r_on["m"]
        assert 900 < r_on["payload_bytes"] < 1200  # a ~1 KB JSON push
        assert r_off["wire_bytes_per_delivery"] > r_off["payload_bytes"]  # plain: payload + header
        assert r_on["wire_bytes_per_delivery"] < r_off["wire_bytes_per_delivery"] * 0.7  # compressed
        assert 0 < r_on["us_per_delivery"] < 10_000 and 0 < r_off["us_per_delivery"] < 10_000
    for rs in (on, off):
        (idle,) = [r for r in rs if r["part"] == "idle"]
        assert idle["complete"] and math.isfinite(idle["bytes_per_connection"])
    row = next(r for r in report["summary"] if r["scenario"] == "compression" and r["part"] == "fanout")
    assert row["wire_bytes_per_delivery"]["ratios"]["rocketws-deflate/rocketws"] < 0.7


@pytest.fixture(scope="module")
def metrics_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return quick_report(
        tmp_path_factory,
        "bench-metrics",
        scenarios=["fanout", "ingress"],
        servers=["rocketws", "rocketws-nometrics"],
        batches=[10],
    )


# -- the Scale figures (docs/benchmarks.md#scale) ---------------------------------------


@pytest.fixture(scope="module")
def scale_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Tiny runs of every Scale figure's scenario: the scale run (2 workers, 2 source
    addresses), fan-out with the write-delay servers, 2 workers, the harness-pipelined
    Redis publish, and the one-emit CPU split."""
    return quick_report(
        tmp_path_factory,
        "bench-scale",
        servers=["rocketws", "rocketws-wd5", "rocketws-redis-pipe", "rocketws-redis-w2"],
        scenarios=["fanout", "latency", "split", "scale"],
        latency_n=[10],
        latency_m=10,
        latency_rate=40.0,  # 25 ms apart: each emit opens its own 5 ms write-delay window
    )


def test_bench_metrics_on_and_off_side_by_side(metrics_report: dict[str, Any]) -> None:
    for server in ("rocketws", "rocketws-nometrics"):
        (fan,) = runs(metrics_report, "fanout", server)
        assert fan["complete"] and fan["deliveries"] == fan["n"] * fan["m"] and fan["http_errors"] == 0
        assert {r["b"] for r in runs(metrics_report, "ingress", server)} >= {1}
    row = next(r for r in metrics_report["summary"] if r["scenario"] == "fanout")
    assert row["us_per_delivery"]["ratios"]["rocketws/rocketws-nometrics"] > 0
    ingress = next(r for r in metrics_report["summary"] if r["scenario"] == "ingress")
    assert ingress["emits_per_s"]["ratios"]["rocketws/rocketws-nometrics"] > 0


def test_bench_baseline_server_needs_a_checkout(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from benchmarks.servers import BASE_REPO_ENV, BASELINE_ENV, REPO, server_command

    monkeypatch.delenv(BASELINE_ENV, raising=False)
    monkeypatch.delenv(BASE_REPO_ENV, raising=False)
    with pytest.raises(ValueError, match=BASELINE_ENV):
        server_command("rocketws-baseline")
    monkeypatch.setenv(BASELINE_ENV, str(tmp_path))
    with pytest.raises(ValueError, match="checkout with manage.py"):
        server_command("rocketws-base")  # a directory that is not a checkout
    (tmp_path / "manage.py").write_text("")
    for name in ("rocketws-baseline", "rocketws-base"):  # one server, two names
        assert server_command(name)[1] == str(tmp_path / "manage.py")
    assert server_command("rocketws-nometrics")[1] == str(REPO / "manage.py")


# -- history (issue 11): fan-out with offsets vs without, recovery on both brokers ---------


@pytest.fixture(scope="module")
def history_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return quick_report(
        tmp_path_factory,
        "bench-history",
        servers=["rocketws", "rocketws-history"],
        scenarios=["fanout", "recovery"],
    )


@needs_redis
def test_bench_fanout_with_history_delivers_and_reports_the_ratio(history_report: dict[str, Any]) -> None:
    assert history_report["_elapsed"] < 40
    for r in runs(history_report, "fanout", "rocketws-history"):
        assert r["complete"] and r["deliveries"] == r["n"] * r["m"] and r["http_errors"] == 0
    row = next(r for r in history_report["summary"] if r["scenario"] == "fanout" and r["b"] == 10)
    assert row["us_per_delivery"]["ratios"]["rocketws-history/rocketws"] > 0


@needs_redis
def test_bench_recovery_recovers_on_both_brokers(history_report: dict[str, Any]) -> None:
    cfg = history_report["config"]
    for server in ("rocketws-history", "rocketws-redis-history"):
        rs = {r["mode"]: r for r in runs(history_report, "recovery", server)}
        assert set(rs) == {"recover", "subscribe"}
        for r in rs.values():
            assert r["n"] == cfg["recovery_n"] and r["m"] == cfg["recovery_m"]
            assert r["cpu_s"] > 0 and r["wall_s"] > 0 and r["clients_per_s"] > 0
        # the answer holds every publication (the scenario checks recovered and the count)
        assert rs["recover"]["answer_bytes"] > cfg["recovery_m"] * 100 > rs["subscribe"]["answer_bytes"]
        assert (rs["recover"]["redis_cpu_s"] is None) == (server == "rocketws-history")


@needs_redis
def test_bench_scale_connects_everyone_from_several_addresses_and_delivers(
    scale_report: dict[str, Any],
) -> None:
    (r,) = runs(scale_report, "scale", "rocketws-redis")
    assert r["connected"] == r["n"] == 200 and r["workers"] == 2 and r["clients"] == 2
    assert r["emit_complete"] and len(r["emit_ms_all"]) == 2 and r["emit_ms"] > 0
    assert r["emit_server_cpu_ms"] > 0 and r["emit_redis_cpu_ms"] > 0
    assert r["steady_deliveries"] == r["steady_expected"] == 200 * 5
    assert r["rss_kb_connected"] >= r["rss_kb_start"] > 0 and r["redis_rss_kb"] > 0
    assert r["connects_per_s"] > 0 and r["why"] == "" and r["closed_by_server"] == 0


@needs_redis
def test_bench_fanout_counts_writes_per_subscriber_and_sums_workers(scale_report: dict[str, Any]) -> None:
    for server in ("rocketws", "rocketws-wd5", "rocketws-redis-pipe", "rocketws-redis-w2"):
        rs = runs(scale_report, "fanout", server)
        assert sorted(r["b"] for r in rs) == [1, 10], server
        for r in rs:
            assert r["complete"] and r["http_errors"] == 0, (server, r)
            # every subscriber got every push in at most one write per push
            assert 0 < r["writes_per_subscriber_request"] <= r["b"] * 1.05, (server, r)
    mem10 = next(r for r in runs(scale_report, "fanout", "rocketws") if r["b"] == 10)
    piped10 = next(r for r in runs(scale_report, "fanout", "rocketws-redis-pipe") if r["b"] == 10)
    # a batch leaves in one write per subscriber: on the memory broker, and on Redis when
    # the batch's publications reach Redis together
    assert mem10["writes_per_subscriber_request"] <= 1.05
    assert piped10["writes_per_subscriber_request"] <= 2.0
    w2 = runs(scale_report, "fanout", "rocketws-redis-w2")
    assert all(r["cpu_s"] > 0 and r["redis_cpu_s"] > 0 for r in w2)


@needs_redis
def test_bench_latency_with_write_delay_is_at_least_the_delay(scale_report: dict[str, Any]) -> None:
    (off,) = runs(scale_report, "latency", "rocketws")
    (wd5,) = runs(scale_report, "latency", "rocketws-wd5")
    assert off["complete"] and wd5["complete"]
    # each emit arrives alone in its window, so it is held the whole 5 ms before the write
    assert wd5["p50_ms"] >= 5.0 and wd5["p50_ms"] > off["p50_ms"]


@needs_redis
def test_bench_split_reports_user_and_kernel_cpu_of_one_emit(scale_report: dict[str, Any]) -> None:
    rs = runs(scale_report, "split", "rocketws")
    assert [r["emits"] for r in rs] == [3] and rs[0]["n"] == 20
    r = rs[0]
    assert r["cpu_ms_per_emit"] > 0 and r["emit_ms"] > 0 and r["us_per_socket"] > 0
    assert 0.0 <= r["user_share"] <= 1.0
    assert r["user_ms_per_emit"] >= 0 and r["sys_ms_per_emit"] >= 0


def test_manage_py_bench_prints_the_summary_and_the_sizing_table(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run(
        [sys.executable, str(root / "manage.py"), "bench", "--quick", "--scenarios=fanout,idle"]
        + ["--repeat=1", "--no-plot", f"--out={tmp_path}", "-q"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=root,
    )
    assert out.returncode == 0, out.stderr
    assert "fanout (n=20" in out.stdout and "sizing (medians of RocketWS" in out.stdout
    assert "deliveries/s per core" in out.stdout and "connections per GiB" in out.stdout
    assert (tmp_path / "results.json").is_file()


# -- fan-out paced at a rate (single emits arriving one by one: the write_delay table) ----


@pytest.fixture(scope="module")
def paced_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return quick_report(
        tmp_path_factory,
        "bench-paced",
        servers=["rocketws", "rocketws-wd5"],
        scenarios=["fanout"],
        batches=[1],
        fanout_concurrency=[4],  # several keep-alive connections
        fanout_rates=[0.0, 400.0],
        fanout_latency_every=2,
    )


def test_bench_fanout_rates_option_parses() -> None:
    cfg = bench.parse_args(["--quick", "--fanout-rates", "0,1000,2500", "--fanout-latency-every", "5"])
    assert cfg.fanout_rates == [0.0, 1000.0, 2500.0] and cfg.fanout_latency_every == 5
    assert Config().fanout_rates == [0.0]  # unpaced by default: the figures keep their meaning


@pytest.mark.parametrize("server", ["rocketws", "rocketws-wd5"])
def test_bench_fanout_paced_sends_at_the_rate_and_samples_latency(
    paced_report: dict[str, Any], server: str
) -> None:
    rs = {r["rate"]: r for r in runs(paced_report, "fanout", server)}
    assert sorted(rs) == [0.0, 400.0]
    unpaced, paced = rs[0.0], rs[400.0]
    for r in (unpaced, paced):
        assert r["complete"] and r["http_errors"] == 0 and r["b"] == 1 and r["c"] == 4
        assert 0 < r["us_per_delivery"] < 10_000 and r["writes_per_subscriber_request"] > 0
        assert 150 < r["frame_bytes"] < 220  # about the unpaced push size
    # unpaced: no latency recorded; paced: the emitter held the rate, not faster
    assert unpaced["latency_samples"] == 0 and unpaced["p50_ms"] is None
    assert 100 < paced["emit_rate"] <= 400 * 1.05
    # every 2nd of the 20 subscribers (one subscriber process) recorded every push
    assert paced["latency_samples"] == 10 * paced["m"]
    assert 0 < paced["p50_ms"] <= paced["p99_ms"]


def test_bench_fanout_paced_write_delay_holds_and_coalesces(paced_report: dict[str, Any]) -> None:
    (wd5,) = (r for r in runs(paced_report, "fanout", "rocketws-wd5") if r["rate"] == 400.0)
    # the first push of a window waits the 5 ms, the next (2.5 ms later at 400/s) the rest
    assert wd5["p99_ms"] >= 4.0 and wd5["p50_ms"] >= 2.0
    # 400 emits/s arriving one by one: ~2 per 5 ms window leave in one write
    assert wd5["writes_per_subscriber_request"] < 1.0


def test_bench_read_interval_option_parses() -> None:
    assert bench.parse_args(["--quick", "--read-interval-ms", "50"]).read_interval == 0.05
    assert Config().read_interval == 0.0  # subscribers read on every event by default


@pytest.fixture(scope="module")
def lazy_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return quick_report(
        tmp_path_factory,
        "bench-lazy",
        servers=["rocketws"],
        scenarios=["fanout"],
        batches=[1, 10],
        fanout_concurrency=[4],
        fanout_rates=[0.0, 400.0],
        fanout_latency_every=2,
        read_interval=1.0,
    )


def test_bench_lazy_subscribers_count_every_push_and_samplers_read_at_once(
    lazy_report: dict[str, Any],
) -> None:
    rs = runs(lazy_report, "fanout", "rocketws")
    assert sorted((r["rate"], r["b"]) for r in rs) == [(0.0, 1), (0.0, 10), (400.0, 1), (400.0, 10)]
    for r in rs:
        assert r["complete"] and r["deliveries"] == r["n"] * r["m"] and r["http_errors"] == 0, r
        assert r["client_cpu_s"] > 0 and r["client_us_per_delivery"] > 0
    for r in (r for r in rs if r["rate"]):
        # every 2nd subscriber recorded every push, read as it came: read once a second,
        # the latencies would spread over that second
        assert r["latency_samples"] == r["n"] // 2 * r["m"]
        assert r["p99_ms"] < 500
