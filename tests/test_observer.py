"""Unit tests of /health and /metrics composition (rocketws/process/observer.py,
process/metrics.py): this process alone, and with siblings (``--workers``)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from rocketws.brokers.memory import MemoryBroker
from rocketws.config import Config
from rocketws.core.hub import Hub
from rocketws.core.node import Node
from rocketws.process.metrics import merge_workers
from rocketws.process.observer import Observer
from rocketws.sources.http import MessagesSourceApp


class FakeSiblings:
    """What Observer needs of process.siblings.Siblings: this worker's id, the expected
    count, and the other workers' snapshots."""

    def __init__(self, worker: str, expected: int, others: list[dict[str, Any]]) -> None:
        self.worker, self.expected, self.others = worker, expected, others

    def gather(self) -> list[dict[str, Any]]:
        return self.others


def _node() -> Node:
    node = Node(Hub(), MemoryBroker())
    node.start()
    return node


def _health(connections: int, connected: bool = True, ready: bool = True) -> dict[str, Any]:
    return {
        "connections": connections,
        "users": 0,
        "channels": 1,
        "broker": {"kind": "redis", "connected": connected, "ready": connected and ready},
    }


def test_health_alone_is_ok_with_one_worker() -> None:
    healthy, body = Observer(_node()).health()
    assert healthy and body["status"] == "ok" and body["workers"]["up"] == body["workers"]["expected"] == 1


def test_health_sums_workers_and_is_degraded_when_one_is_missing() -> None:
    siblings = FakeSiblings("1", 3, [{"worker": "2", "health": _health(5)}])
    healthy, body = Observer(_node(), siblings).health()  # type: ignore[arg-type]
    assert healthy and body["status"] == "degraded"
    assert body["workers"]["up"] == 2 and body["workers"]["expected"] == 3
    assert body["connections"] == 5 and [w["worker"] for w in body["workers"]["list"]] == ["1", "2"]


def test_health_fails_when_any_worker_lost_the_broker() -> None:
    siblings = FakeSiblings("1", 2, [{"worker": "2", "health": _health(0, connected=False)}])
    healthy, body = Observer(_node(), siblings).health()  # type: ignore[arg-type]
    assert not healthy and body["status"] == "broker unreachable" and body["broker"]["connected"] is False


def test_health_says_resubscribing_while_a_worker_has_not_resubscribed() -> None:
    """Reachable but not resubscribed after an outage (issue 11): healthy, not ready."""
    siblings = FakeSiblings("1", 2, [{"worker": "2", "health": _health(0, ready=False)}])
    healthy, body = Observer(_node(), siblings).health()  # type: ignore[arg-type]
    assert healthy and body["status"] == "resubscribing"
    assert body["broker"] == {"kind": "memory", "connected": True, "ready": False}
    _, alone = Observer(_node()).health()
    assert alone["broker"] == {"kind": "memory", "connected": True, "ready": True}


def test_merge_workers_labels_every_sample_and_keeps_types() -> None:
    text = Observer(_node()).snapshot()["metrics"]
    merged = merge_workers({"1": text, "2": text}).decode()
    families = {f.name: f for f in text_string_to_metric_families(merged)}
    assert families["rocketws_connections"].type == "gauge"
    assert families["rocketws_deliveries"].type == "counter"
    assert families["rocketws_rpc_batch_duration_seconds"].type == "histogram"
    workers = {s.labels["worker"] for s in families["rocketws_connections"].samples}
    assert workers == {"1", "2"}
    assert all("worker" in s.labels for f in families.values() for s in f.samples)


class _Resubscribing(MemoryBroker):
    """A broker reachable but not yet resubscribed (RedisBroker after an outage)."""

    def ready(self) -> bool:
        return False


@pytest.mark.parametrize("observed", [True, False])
def test_health_is_200_and_ready_503_while_resubscribing(observed: bool) -> None:
    node = Node(Hub(), _Resubscribing())
    node.start()
    app = MessagesSourceApp(node, Config(), observer=Observer(node) if observed else None)
    health, ready = app.route("GET", "/health"), app.route("GET", "/ready")
    assert health is not None and ready is not None
    assert (health.status, ready.status) == (200, 503)
    body = json.loads(health.body)
    assert body["status"] == "resubscribing"
    assert body["broker"] == {"kind": "memory", "connected": True, "ready": False}
    assert json.loads(ready.body) == {**body, "status": "not ready"}
    fine = MessagesSourceApp(_node(), Config(), observer=None).route("GET", "/ready")
    assert fine is not None and fine.status == 200 and json.loads(fine.body)["status"] == "ok"
