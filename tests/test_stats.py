"""Unit tests of the node's plain counters (rocketws/core/stats.py) and where the core
adds to them (rpc dispatch, Node.deliver)."""

from __future__ import annotations

import json

from rocketws.brokers.memory import MemoryBroker
from rocketws.core import rpc
from rocketws.core.exceptions import RpcError
from rocketws.core.hub import Hub
from rocketws.core.node import Node
from rocketws.core.session import Session
from rocketws.core.stats import LATENCY_BUCKETS, Histogram, NodeStats, ProxyStats, RpcStats

from .fakes import RecordingOutlet


def test_histogram_buckets_are_upper_bounds_inclusive() -> None:
    h = Histogram((0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 1.0, 3.0):
        h.observe(value)
    assert h.counts == [2, 2, 1]
    assert h.cumulative() == [(0.1, 2), (1.0, 4), (float("inf"), 5)]
    assert h.count == 5 and abs(h.sum - 4.65) < 1e-9


def test_histogram_merge_adds_counts_and_sums() -> None:
    a, b = Histogram(), Histogram()
    a.observe(0.001)
    b.observe(0.001)
    b.observe(20.0)
    a.merge(b)
    assert a.count == 3 and a.counts[-1] == 1 and len(a.counts) == len(LATENCY_BUCKETS) + 1


def test_rpc_stats_count_errors_per_method_and_code() -> None:
    stats = RpcStats()
    stats.error("emit", -32602)
    stats.error("emit", -32602)
    stats.error("unknown", -32601)
    assert stats.errors == {("emit", -32602): 2, ("unknown", -32601): 1}


def _node() -> Node:
    node = Node(Hub(), MemoryBroker())
    node.start()
    return node


def test_dispatch_counts_calls_errors_and_times_single_calls() -> None:
    node = _node()
    ctx = rpc.BackendContext(node, 255)
    stats = RpcStats()
    doc = json.dumps({"jsonrpc": "2.0", "method": "emit", "params": ["c", 1], "id": 1})
    rpc.dispatch(doc, rpc.backend_methods, ctx, 10, stats=stats)
    rpc.dispatch(
        json.dumps({"jsonrpc": "2.0", "method": "nope", "id": 2}), rpc.backend_methods, ctx, 10, stats=stats
    )
    rpc.dispatch("{", rpc.backend_methods, ctx, 10, stats=stats)
    batch = [
        {"jsonrpc": "2.0", "method": "emit", "params": ["c", 2], "id": 3},
        {"jsonrpc": "2.0", "method": "emit", "params": [""], "id": 4},
        5,
    ]
    rpc.dispatch(json.dumps(batch), rpc.backend_methods, ctx, 10, stats=stats)
    assert stats.calls == {"emit": 3}
    assert stats.errors == {
        ("unknown", -32601): 1,
        ("parse", -32700): 1,
        ("emit", -32602): 1,
        ("invalid", -32600): 1,
    }
    assert {m: h.count for m, h in stats.latency.items()} == {"emit": 1}  # the unknown method is not timed
    assert stats.batches.count == 1
    assert node.stats.publications == {"http": 2, "redis": 0, "send_data": 0}


def test_proxy_stats_count_calls_errors_and_latency_per_kind() -> None:
    stats = ProxyStats()
    stats.observe("rpc", "app.*", 0.002, None)
    stats.observe("rpc", "app.*", 1.5, -32042)
    stats.observe("rpc", "time.now", 0.0001, 1001)
    stats.observe("subscribe", "subscribe", 0.003, None)
    assert stats.calls == {("rpc", "app.*"): 2, ("rpc", "time.now"): 1, ("subscribe", "subscribe"): 1}
    assert stats.errors == {("rpc", "app.*", -32042): 1, ("rpc", "time.now", 1001): 1}
    assert {k: h.count for k, h in stats.latency.items()} == {"rpc": 3, "subscribe": 1}
    assert abs(stats.latency["rpc"].sum - 1.5021) < 1e-9
    assert NodeStats().proxy.calls == {}


def test_dispatch_counts_a_deferred_call_refused_like_a_failed_call() -> None:
    stats = RpcStats()
    refused = RpcError({"reason": "full"}, code=-32044)
    doc = json.dumps({"jsonrpc": "2.0", "method": "rpc", "params": {"method": "x"}, "id": 7})
    answer = rpc.dispatch(doc, rpc.client_methods, object(), 10, defer=lambda serve: refused, stats=stats)
    assert answer is not None and json.loads(answer)["error"]["code"] == -32044
    assert stats.calls == {"rpc": 1} and stats.errors == {("rpc", -32044): 1}
    served = []
    rpc.dispatch(doc, rpc.client_methods, object(), 10, defer=lambda serve: served.append(serve), stats=stats)
    assert len(served) == 1 and stats.calls == {"rpc": 1}  # counted when served apart, not before


def test_dispatch_without_stats_counts_nothing_but_publications() -> None:
    node = _node()
    doc = json.dumps({"jsonrpc": "2.0", "method": "emit", "params": ["c", 1], "id": 1})
    rpc.dispatch(doc, rpc.backend_methods, rpc.BackendContext(node, 255, source="redis"), 10)
    assert node.stats.publications["redis"] == 1
    assert all(not s.calls and not s.errors for s in node.stats.rpc.values())


def test_deliver_counts_frames_queued() -> None:
    node = _node()
    sessions = [Session(RecordingOutlet(), 1 << 20) for _ in range(3)]
    for session in sessions:
        node.connect(session)
        node.subscribe(session, "room")
    assert node.emit("room", 1) == 3
    assert node.notify_all(2) == 3
    assert node.stats.deliveries == 6
    assert node.stats.messages_sent == 6


def test_node_stats_share_between_nodes_of_one_hub() -> None:
    stats = NodeStats(5.0)
    hub = Hub()
    a, b = Node(hub, MemoryBroker(), stats=stats), Node(hub, MemoryBroker(), stats=stats)
    assert a.stats is b.stats is stats and stats.started == 5.0
    stats.disconnected(1000)
    stats.disconnected(1000)
    assert stats.disconnects == {1000: 2}


def test_node_info_is_this_nodes_record() -> None:
    node = Node(Hub(), MemoryBroker(), clock=lambda: 110.0, stats=NodeStats(100.0))
    node.start()
    info = node.info()
    assert info["id"] == node.broker.node_id and info["uptime"] == 10.0
    assert (info["connections"], info["users"], info["channels"], info["subscriptions"]) == (0, 0, 0, 0)
    assert info["broker"] == {"kind": "memory", "connected": True}
    assert node.cluster_info() == ([info], True)
