from __future__ import annotations

from collections.abc import Iterator

import pytest

from .redis_fixtures import private_redis, redis_server  # noqa: F401  (fixtures)
from .support import ServerProcess, StartServer


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
