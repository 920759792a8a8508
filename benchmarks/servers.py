"""Start, pin, measure and stop the servers under test (Linux /proc readings)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import httpload
from .procstat import CLK_TCK, stop_process, tree_rss_kb, tree_schedstat_ns, tree_stat_ticks, tree_write_calls
from .redisproc import RedisProcess

REPO = Path(__file__).resolve().parent.parent
_WS_RE = re.compile(r"listening on wss?://\[?([^\]\s/]+?)\]?:(\d+)")
_HTTP_RE = re.compile(r"listening on http://\[?([^\]\s/]+?)\]?:(\d+)")

SERVER_NAMES = ("rocketws", "peer")  # the default set
# rocketws-redis: RocketWS with --broker=redis://... on a private redis-server it starts;
# rocketws-redis-w2: the same with --workers=2 (CPU and RSS summed over the processes);
# rocketws-deflate: RocketWS with permessage-deflate on (the compression scenario);
# rocketws-nometrics: RocketWS with METRICS off (no call timing, no /metrics), the
# baseline of "metrics must not cost the hot path" (docs/benchmarks.md#metrics);
# rocketws-history / rocketws-redis-history: the same with history on every channel
# (the default namespace keeps 1,000 publications for 300 s: offsets in every push);
# rocketws-wdN: RocketWS with WRITE_DELAY = N ms (the write-delay table);
# rocketws-redis-pipe: rocketws-redis, but the fan-out's emits are PUBLISHed by the
# harness itself, each request's B in one Redis pipeline (``redis_publish``): what the
# delivery side does when a batch's publications reach Redis together
KNOWN_SERVERS = (
    "rocketws",
    "rocketws-base",
    "rocketws-baseline",
    "rocketws-redis",
    "rocketws-redis-pipe",
    "rocketws-redis-w2",
    "rocketws-deflate",
    "rocketws-nometrics",
    "rocketws-history",
    "rocketws-redis-history",
    "rocketws-wd1",
    "rocketws-wd5",
    "rocketws-wd20",
    "rocketws-base-wd5",
    "peer",
)
HISTORY_NAMESPACES = '[{"name": "", "history_size": 1000, "history_ttl": 300}]'
SERVER_ENV: dict[str, dict[str, str]] = {
    "rocketws-deflate": {"ROCKETWS_COMPRESSION": "1"},
    "rocketws-nometrics": {"ROCKETWS_METRICS": "0"},
    "rocketws-history": {"ROCKETWS_NAMESPACES": HISTORY_NAMESPACES},
    "rocketws-redis-history": {"ROCKETWS_NAMESPACES": HISTORY_NAMESPACES},
    **{f"rocketws-wd{ms}": {"ROCKETWS_WRITE_DELAY": str(ms / 1000)} for ms in (1, 5, 20)},
    "rocketws-base-wd5": {"ROCKETWS_WRITE_DELAY": "0.005"},
}
SERVER_WORKERS = {"rocketws-redis-w2": 2}
# rocketws-base (or its older name rocketws-baseline): RocketWS from another checkout
# (BENCH_BASE_REPO, or ROCKETWS_BENCH_BASELINE; e.g. a `git worktree` or `git archive` of
# the commit before a change), so "before" and "after" are measured in the same run;
# rocketws-base-wd5: the same with WRITE_DELAY = 5 ms (against rocketws-wd5)
BASE_REPO_ENV = "BENCH_BASE_REPO"
BASELINE_ENV = "ROCKETWS_BENCH_BASELINE"


def _manage_py(name: str) -> Path:
    if name not in ("rocketws-base", "rocketws-baseline", "rocketws-base-wd5"):
        return REPO / "manage.py"
    base = os.environ.get(BASE_REPO_ENV) or os.environ.get(BASELINE_ENV)
    if not base or not (Path(base) / "manage.py").is_file():
        raise ValueError(
            f"{name} needs {BASE_REPO_ENV} or {BASELINE_ENV}=<a RocketWS checkout with manage.py>"
        )
    return Path(base) / "manage.py"


def uses_redis(name: str) -> bool:
    """Whether server ``name`` runs on the Redis broker (a private redis-server)."""
    return name.startswith("rocketws-redis")


def server_command(
    name: str, python: str = sys.executable, broker: str | None = None, workers: int = 1
) -> list[str]:
    """The command line that starts server ``name`` on ephemeral loopback ports
    (``workers`` > 1: ``--workers``, on the Redis broker)."""
    if name in KNOWN_SERVERS and name.startswith("rocketws"):
        cmd = [
            python,
            str(_manage_py(name)),
            "runserver",
            "--ws-conn=127.0.0.1:0",
            "--ms-conn=127.0.0.1:0",
        ]
        if uses_redis(name):
            if not broker:
                raise ValueError(f"{name} needs a redis:// broker URL")
            cmd.append(f"--broker={broker}")
        workers = max(workers, SERVER_WORKERS.get(name, 1))
        if workers > 1:
            if not uses_redis(name):
                raise ValueError(f"{name}: --workers needs the Redis broker")
            cmd.append(f"--workers={workers}")
        return cmd
    if name == "peer":
        return [python, "-m", "benchmarks.peers.websockets_peer", "--ws-port", "0", "--http-port", "0"]
    raise ValueError(f"unknown server {name!r} (expected one of {', '.join(KNOWN_SERVERS)})")


def self_signed_certificate(directory: str) -> dict[str, str]:
    """A throwaway P-256 certificate for 127.0.0.1 (openssl CLI) in ``directory``: the
    environment that makes RocketWS serve wss:// with it (the MessagesSource stays http://,
    so the harness's plain HTTP client keeps working)."""
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        + ["-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=127.0.0.1"],
        check=True,
        capture_output=True,
    )
    return {"ROCKETWS_TLS_CERT": cert, "ROCKETWS_TLS_KEY": key, "ROCKETWS_HTTPS": "false"}


@dataclass
class CpuSample:
    """Server CPU time so far: schedstat (ns, all live threads) and stat (ticks)."""

    sched_ns: int
    stat_ticks: int

    def __sub__(self, other: CpuSample) -> CpuDelta:
        return CpuDelta(self.sched_ns - other.sched_ns, self.stat_ticks - other.stat_ticks)


@dataclass
class CpuDelta:
    sched_ns: int
    stat_ticks: int

    @property
    def seconds(self) -> float:
        """CPU seconds; schedstat's nanoseconds when available, else utime+stime ticks."""
        if self.sched_ns > 0:
            return self.sched_ns / 1e9
        return self.stat_ticks / CLK_TCK

    @property
    def stat_seconds(self) -> float:
        return self.stat_ticks / CLK_TCK


@dataclass
class Server:
    """One server process under test, pinned to ``cpus`` when given."""

    name: str
    cpus: set[int] | None = None
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    host: str = "127.0.0.1"
    ws_port: int = 0
    http_port: int = 0
    log_path: str = ""
    redis: RedisProcess | None = None  # rocketws-redis only: its private redis-server
    tls: bool = False  # RocketWS only: serve wss:// with a throwaway certificate
    tls_dir: str = ""
    workers: int = 1  # rocketws-redis: --workers (CPU and RSS are summed over the tree)

    def start(self, timeout: float = 30.0) -> Server:
        """Start (with its redis-server for rocketws-redis); on failure nothing is left running."""
        if self.name not in KNOWN_SERVERS:
            raise ValueError(f"unknown server {self.name!r} (expected one of {', '.join(KNOWN_SERVERS)})")
        try:
            return self._start(timeout)
        except BaseException:
            self.cleanup()
            raise

    def _start(self, timeout: float) -> Server:
        broker = None
        if uses_redis(self.name):
            # on the server's core: RocketWS + Redis together get what RocketWS alone gets
            self.redis = RedisProcess(self.cpus).start()
            broker = self.redis.url
        fd, self.log_path = tempfile.mkstemp(prefix=f"bench-{self.name}-", suffix=".log")
        cpus = self.cpus
        env = {**os.environ, **SERVER_ENV.get(self.name, {}), **self.env}
        if self.tls:
            if not self.name.startswith("rocketws"):
                raise ValueError(f"{self.name}: TLS runs are for RocketWS only")
            self.tls_dir = tempfile.mkdtemp(prefix="bench-tls-")
            env.update(self_signed_certificate(self.tls_dir))
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")

        def pin() -> None:  # runs in the child before exec; the open-files limit is inherited
            if cpus:
                os.sched_setaffinity(0, cpus)

        self.proc = subprocess.Popen(
            server_command(self.name, broker=broker, workers=self.workers),
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=fd,
            preexec_fn=pin,
        )
        os.close(fd)
        deadline = time.monotonic() + timeout
        while True:
            text = Path(self.log_path).read_text(errors="replace")
            ws, http = _WS_RE.search(text), _HTTP_RE.search(text)
            if ws and http:
                self.ws_port, self.http_port = int(ws.group(2)), int(http.group(2))
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"{self.name} did not report its ports (exit {self.proc.returncode}); "
                    f"log tail:\n{text[-2000:]}"
                )
            time.sleep(0.02)
        try:
            self.wait_healthy(deadline)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}; log tail:\n{self.log_tail()}") from None
        return self

    def wait_healthy(self, deadline: float) -> dict[str, object]:
        import json

        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                status, body = httpload.get(self.host, self.http_port, "/health", timeout=2)
                if status == 200:
                    return dict(json.loads(body))
            except (OSError, ValueError, httpload.HTTPError) as exc:
                last = exc
            time.sleep(0.02)
        raise RuntimeError(f"{self.name} /health did not answer 200: {last}")

    def health(self) -> dict[str, object]:
        return self.wait_healthy(time.monotonic() + 10)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cpu(self) -> CpuSample:
        """CPU so far of the server process and every process below it (workers)."""
        return CpuSample(tree_schedstat_ns(self.pid), tree_stat_ticks(self.pid))

    def write_calls(self) -> int:
        """write(2) calls so far of the server's processes (its WebSocket writes)."""
        return tree_write_calls(self.pid)

    def redis_cpu_ns(self) -> int | None:
        """CPU ns so far of this server's redis-server (None when it has none)."""
        return None if self.redis is None else self.redis.cpu_ns()

    def rss_kb(self) -> int:
        """RSS of the server process and every process below it (workers)."""
        return tree_rss_kb(self.pid)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM this server (by PID), SIGKILL it if it has not exited in ``timeout``."""
        stop_process(self.proc, timeout)

    def log_tail(self, n: int = 2000) -> str:
        try:
            return Path(self.log_path).read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def cleanup(self) -> None:
        self.stop()
        if self.redis is not None:  # after RocketWS, so it never sees Redis go away
            self.redis.cleanup()
            self.redis = None
        if self.log_path:
            try:
                os.unlink(self.log_path)
            except OSError:
                pass
        if self.tls_dir:
            shutil.rmtree(self.tls_dir, ignore_errors=True)
            self.tls_dir = ""


def cpu_plan() -> tuple[set[int] | None, set[int] | None]:
    """(server cpus, load-generator cpus): the server alone on one core when there are 2+."""
    try:
        avail = sorted(os.sched_getaffinity(0))
    except AttributeError:
        return None, None
    if len(avail) < 2:
        return None, None
    return {avail[0]}, set(avail[1:])
