"""``GET /metrics`` and ``GET /health``: the node's plain counters as Prometheus families.

The core and the adapters count in plain ints (``core.stats``); nothing here runs on
the hot path.  ``NodeCollector`` is a prometheus-client custom collector that reads
those ints when ``/metrics`` is scraped, so a scrape costs a walk over a few dicts and a
publication costs nothing extra.  Process metrics come from prometheus-client's
``ProcessCollector`` (``rocketws_process_*``).

With ``runserver --workers N`` each worker answers its siblings over a Unix socket in
the supervisor's run directory (``process/siblings.py``); the worker that receives the
scrape adds every worker's families, each sample labelled ``worker="I"``, so one scrape
covers the machine (docs/operations.md says why this and not multiprocess mode).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from rocketws import __version__
from rocketws.core.node import Node
from rocketws.core.stats import Histogram

__all__ = ["CONTENT_TYPE", "NodeCollector", "Metrics", "merge_workers"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _buckets(histogram: Histogram) -> list[tuple[str, float]]:
    return [("+Inf" if bound == float("inf") else repr(bound), n) for bound, n in histogram.cumulative()]


def _histogram(family: HistogramMetricFamily, labels: list[str], histogram: Histogram) -> None:
    family.add_metric(labels, _buckets(histogram), histogram.sum)


class NodeCollector(Collector):
    """Reads ``node.stats``, the hub and the broker at scrape time."""

    def __init__(self, node: Node) -> None:
        self.node = node

    def collect(self) -> Iterator[Metric]:
        node = self.node
        stats, hub = node.stats, node.hub
        broker = node.broker.stats

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, value=value)

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            return CounterMetricFamily(name, doc, value=value)

        info = GaugeMetricFamily("rocketws_build_info", "RocketWS version (value 1)", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        yield gauge("rocketws_start_time_seconds", "Unix time the node started", stats.started)
        yield gauge("rocketws_connections", "Open WebSocket connections", hub.connections)
        yield gauge("rocketws_users", "Users with at least one open connection", hub.user_count)
        yield gauge(
            "rocketws_subscriptions", "Channel subscriptions of open connections", hub.subscription_count
        )
        yield gauge("rocketws_channels", "Channels with at least one local subscriber", hub.channel_count)
        yield counter(
            "rocketws_messages_received", "WebSocket text messages received", stats.messages_received
        )
        yield counter(
            "rocketws_messages_sent",
            "WebSocket messages queued: publication deliveries and JSON-RPC responses",
            stats.messages_sent,
        )
        yield counter("rocketws_received_bytes", "Bytes read from WebSocket sockets", stats.bytes_received)
        yield counter("rocketws_sent_bytes", "Bytes written to WebSocket sockets", stats.bytes_sent)
        publications = CounterMetricFamily(
            "rocketws_publications", "Publications accepted, by source", labels=["source"]
        )
        for source, n in stats.publications.items():
            publications.add_metric([source], n)
        yield publications
        yield counter(
            "rocketws_deliveries",
            "Publication frames queued to local subscribers (fan-out)",
            stats.deliveries,
        )
        disconnects = CounterMetricFamily(
            "rocketws_disconnects",
            "WebSocket connections closed, by close code (1006: no close frame)",
            labels=["code"],
        )
        for code, n in sorted(stats.disconnects.items(), key=lambda item: str(item[0])):
            disconnects.add_metric([str(code)], n)
        yield disconnects
        slow = CounterMetricFamily(
            "rocketws_slow_consumer_closes", "Connections closed with 4008, by reason", labels=["reason"]
        )
        for reason, n in stats.slow_consumers.items():
            slow.add_metric([reason], n)
        yield slow
        yield from self._rpc()
        yield from self._proxy()
        yield gauge("rocketws_broker_up", "1 when the broker is reachable", 1 if broker.connected else 0)
        publish = HistogramMetricFamily(
            "rocketws_broker_publish_duration_seconds",
            "Time to hand a publication to the broker (Redis round trip; memory broker: none)",
            labels=["broker"],
        )
        _histogram(publish, [node.broker.kind], broker.publish)
        yield publish
        yield counter("rocketws_broker_publish_errors", "Publications the broker refused", broker.errors)
        yield counter("rocketws_broker_reconnects", "Reconnections to the broker", broker.reconnects)

    def _rpc(self) -> Iterator[Metric]:
        rpc = self.node.stats.rpc
        calls = CounterMetricFamily(
            "rocketws_rpc_calls", "JSON-RPC calls of declared methods", labels=["endpoint", "method"]
        )
        errors = CounterMetricFamily(
            "rocketws_rpc_errors",
            "JSON-RPC error responses (method unknown/invalid/parse for bad documents)",
            labels=["endpoint", "method", "code"],
        )
        latency = HistogramMetricFamily(
            "rocketws_rpc_duration_seconds",
            "Time to serve a document holding one JSON-RPC call",
            labels=["endpoint", "method"],
        )
        batches = HistogramMetricFamily(
            "rocketws_rpc_batch_duration_seconds", "Time to serve a JSON-RPC batch", labels=["endpoint"]
        )
        for endpoint, stats in rpc.items():
            for method, n in sorted(stats.calls.items()):
                calls.add_metric([endpoint, method], n)
            for (method, code), n in sorted(stats.errors.items()):
                errors.add_metric([endpoint, method, str(code)], n)
            for method, histogram in sorted(stats.latency.items()):
                _histogram(latency, [endpoint, method], histogram)
            _histogram(batches, [endpoint], stats.batches)
        yield from (calls, errors, latency, batches)

    def _proxy(self) -> Iterator[Metric]:
        proxy = self.node.stats.proxy
        calls = CounterMetricFamily(
            "rocketws_proxy_calls",
            "Calls to the application by proxy kind and route pattern (failed ones too)",
            labels=["kind", "pattern"],
        )
        errors = CounterMetricFamily(
            "rocketws_proxy_errors",
            "Proxied calls that failed, by JSON-RPC code (the application's own or -32040..-32045)",
            labels=["kind", "pattern", "code"],
        )
        latency = HistogramMetricFamily(
            "rocketws_proxy_call_duration_seconds",
            "Time of a call to the application (HTTP round trip or in-process handler)",
            labels=["kind"],
        )
        for (kind, pattern), n in sorted(proxy.calls.items()):
            calls.add_metric([kind, pattern], n)
        for (kind, pattern, code), n in sorted(proxy.errors.items()):
            errors.add_metric([kind, pattern, str(code)], n)
        for kind, histogram in sorted(proxy.latency.items()):
            _histogram(latency, [kind], histogram)
        yield from (calls, errors, latency)


class _Families(Collector):
    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


class Metrics:
    """This process's registry: the node's families and the process metrics."""

    def __init__(self, node: Node) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(NodeCollector(node))
        ProcessCollector(namespace="rocketws", registry=self.registry)

    def render(self) -> bytes:
        """The Prometheus text exposition of this process."""
        return generate_latest(self.registry)


def merge_workers(texts: dict[str, str]) -> bytes:
    """One exposition of every worker's (worker id -> its text), each sample labelled
    ``worker``; families of the same name are merged, in first-seen order."""
    merged: dict[str, Metric] = {}
    for worker, text in texts.items():
        for family in text_string_to_metric_families(text):
            into = merged.get(family.name)
            if into is None:
                into = merged[family.name] = Metric(
                    family.name, family.documentation, family.type, family.unit
                )
            for sample in family.samples:
                labels: dict[str, Any] = {"worker": worker, **sample.labels}
                into.add_sample(sample.name, labels, sample.value, sample.timestamp, sample.exemplar)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(merged.values()))
    return generate_latest(registry)
