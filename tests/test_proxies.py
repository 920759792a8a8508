"""The proxies' adapter (rocketws.transports.proxies) in this process's gevent hub: an
in-process handler and a real HTTP application (tests/proxy_app.py), the per-process
limit and the observer (what metrics are fed).  End to end through a server:
tests/test_e2e_proxy.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import gevent
import pytest

from rocketws.config import load_config
from rocketws.core.codes import RpcCode
from rocketws.core.exceptions import ApplicationError, RpcError
from rocketws.core.proxy import CallContext
from rocketws.transports.proxies import Proxies

from .proxy_app import ProxyApp
from .support import wait_in_hub


@pytest.fixture
def app() -> Iterator[ProxyApp]:
    application = ProxyApp()
    yield application
    application.close()


def proxies(app: ProxyApp, **env: str) -> tuple[Proxies, list[tuple[str, str, float, Any]]]:
    routes = [{"pattern": "time.*", "handler": "tests.proxy_app:now"}, {"pattern": "app.*", "url": app.url}]
    config = load_config(
        None,
        {
            "ROCKETWS_RPC_PROXY_ROUTES": json.dumps(routes),
            "ROCKETWS_SUBSCRIBE_PROXY_URL": app.url,
            "ROCKETWS_PROXY_TIMEOUT": "1",
            **env,
        },
    )
    seen: list[tuple[str, str, float, Any]] = []
    made = Proxies(config)
    made.observer = lambda kind, label, seconds, code: seen.append((kind, label, seconds, code))
    return made, seen


def ctx(method: str) -> CallContext:
    return CallContext(method, "c1", "ann")


def test_observer_sees_each_call_by_route_pattern_with_its_outcome(app: ProxyApp) -> None:
    made, seen = proxies(app)
    try:
        assert made.call(ctx("time.now"), None)["method"] == "time.now"
        with pytest.raises(ApplicationError):
            made.call(ctx("app.fail"), None)
        made.subscribe(ctx("subscribe"), "room")
        with pytest.raises(RpcError) as info:
            made.call(ctx("nowhere"), None)  # no route: refused before any call
        assert info.value.code == RpcCode.PROXY_METHOD_NOT_FOUND
    finally:
        made.close()
    assert [(kind, label, code) for kind, label, _, code in seen] == [
        ("rpc", "time.*", None),
        ("rpc", "app.*", 1001),
        ("subscribe", "subscribe", None),
    ]
    assert all(0 <= seconds < 1 for _, _, seconds, _ in seen)
    assert made.describe() == "proxies: rpc time.*, app.*; subscribe"


def test_per_process_limit_counts_calls_of_every_connection(app: ProxyApp) -> None:
    made, seen = proxies(app, ROCKETWS_PROXY_MAX_IN_FLIGHT="2", ROCKETWS_PROXY_TIMEOUT="5")
    try:
        waiting = [gevent.spawn(made.call, ctx("app.slow"), None) for _ in range(2)]
        wait_in_hub(lambda: app.held() == 2, what="2 calls held by the application")
        with pytest.raises(RpcError) as info:
            made.call(ctx("time.now"), None)
        assert info.value.code == RpcCode.TOO_MANY_CALLS and info.value.data["limit"] == "max_in_flight"  # type: ignore[index]
        app.release()
        assert [g.get(timeout=5) for g in waiting] == ["late", "late"]
        assert made.in_flight == 0 and made.call(ctx("time.now"), None)
    finally:
        app.release()
        made.close()
    assert ("rpc", "time.*", 0.0, RpcCode.TOO_MANY_CALLS) in seen
