"""What ``/metrics`` and ``/health`` answer: this process, or every worker of the machine."""

from __future__ import annotations

import os
from typing import Any

from rocketws.core.node import Node
from rocketws.process.metrics import Metrics, merge_workers
from rocketws.process.siblings import Siblings


class Observer:
    """The MessagesSource's view of the node (``sources.http.Observer``).

    ``siblings`` (a worker of ``--workers N``): answers cover every worker that answers.
    """

    def __init__(self, node: Node, siblings: Siblings | None = None) -> None:
        self.node = node
        self.siblings = siblings
        self._metrics = Metrics(node)

    def local_health(self) -> dict[str, Any]:
        hub, broker = self.node.hub, self.node.broker
        return {
            "connections": hub.connections,
            "users": hub.user_count,
            "channels": hub.channel_count,
            "broker": {"kind": broker.kind, "connected": broker.stats.connected, "ready": broker.ready()},
        }

    def snapshot(self) -> dict[str, Any]:
        """What a sibling asks for: this worker's metrics text and health."""
        worker = self.siblings.worker if self.siblings is not None else "1"
        return {
            "worker": worker,
            "pid": os.getpid(),
            "metrics": self._metrics.render().decode(),
            "health": self.local_health(),
        }

    def metrics(self) -> bytes:
        """The Prometheus text exposition (every worker's, labelled ``worker``)."""
        if self.siblings is None:
            return self._metrics.render()
        own = self.snapshot()
        texts = {str(own["worker"]): str(own["metrics"])}
        for other in self.siblings.gather():
            texts[str(other.get("worker"))] = str(other.get("metrics", ""))
        return merge_workers(dict(sorted(texts.items())))

    def health(self) -> tuple[bool, dict[str, Any]]:
        """(healthy, body): unhealthy when a running worker cannot reach the broker.

        ``broker.ready``: every worker reaches the broker and hears every channel it
        subscribed (false while one resubscribes after an outage: status
        ``resubscribing``, still healthy; ``/ready`` answers 503 then)."""
        own = self.local_health()
        if self.siblings is None:
            workers = [{"worker": "1", **own}]
            expected = 1
        else:
            workers = [{"worker": self.siblings.worker, **own}]
            workers += [
                {"worker": str(s.get("worker")), **s.get("health", {})} for s in self.siblings.gather()
            ]
            workers.sort(key=lambda w: w["worker"])
            expected = self.siblings.expected
        broker_ok = all(w.get("broker", {}).get("connected", False) for w in workers)
        ready = broker_ok and all(w.get("broker", {}).get("ready", False) for w in workers)
        if not broker_ok:
            status = "broker unreachable"
        elif not ready:
            status = "resubscribing"
        elif len(workers) < expected:
            status = "degraded"
        else:
            status = "ok"
        body = {
            "status": status,
            "connections": sum(int(w.get("connections", 0)) for w in workers),
            "users": sum(int(w.get("users", 0)) for w in workers),
            "channels": sum(int(w.get("channels", 0)) for w in workers),
            "broker": {"kind": own["broker"]["kind"], "connected": broker_ok, "ready": ready},
            "workers": {"up": len(workers), "expected": expected, "list": workers},
        }
        return broker_ok, body
