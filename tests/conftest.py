from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from .redis_fixtures import private_redis, redis_server  # noqa: F401  (fixtures)
from .support import ServerProcess, StartServer


class _Tracebacks(logging.Handler):
    """Collects rocketws log records that carry a traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.name.startswith("rocketws"):
            self.records.append(record)


@pytest.fixture(autouse=True)
def no_traceback_logged_in_process(request: pytest.FixtureRequest) -> Iterator[None]:
    """Servers and cores run inside the test process log no traceback (our bugs only).

    Tests that take ``caplog`` inspect the log themselves (some cause a bug on purpose).
    """
    handler = _Tracebacks()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
    if "caplog" not in request.fixturenames:
        assert not handler.records, "traceback logged: " + "; ".join(
            f"{r.name}: {r.getMessage()}" for r in handler.records
        )


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    """One server per test module, with the spec's example methods on."""
    srv = ServerProcess(env={"ROCKETWS_SPEC_EXAMPLE_METHODS": "1"}).start()
    yield srv
    srv.kill()


@pytest.fixture
def start_server() -> Iterator[StartServer]:
    """Start a server with extra environment variables; killed after the test."""
    started: list[ServerProcess] = []

    def start(**env: str) -> ServerProcess:
        srv = ServerProcess(env=env).start()
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.kill()
