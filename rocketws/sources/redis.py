"""The Redis message source: backends PUBLISH JSON-RPC ``emit``/``notify_all`` to Redis.

URL: ``redis://host:port/db?channel=NAME`` (channel default ``rocketws:messages``).
Each message is one JSON-RPC request, notification or batch, as on the HTTP
MessagesSource; only ``emit`` and ``notify_all`` are served, and nothing is answered.

Every node subscribed to the source channel receives each message, so each node
delivers it to its own local subscribers only (a Node over the same Hub with an
in-memory broker) rather than publishing it again through the cluster broker: every
client gets it exactly once, whichever broker the nodes use.  Invalid messages (bad
JSON, invalid requests, unknown methods, bad params) are logged and counted; they never
stop the listener.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from rocketws.brokers.memory import MemoryBroker
from rocketws.brokers.redis_io import Subscriber, connection_kwargs
from rocketws.core import jsonrpc, rpc
from rocketws.core.node import Node

logger = logging.getLogger(__name__)

DEFAULT_CHANNEL = "rocketws:messages"
SOURCE_METHODS: rpc.Methods = {name: rpc.backend_methods[name] for name in ("emit", "notify_all")}


def split_source_url(url: str) -> tuple[str, str]:
    """(URL for redis-py, source channel) from ``redis://...?channel=NAME``."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    channel = next((v for k, v in query if k == "channel"), "") or DEFAULT_CHANNEL
    rest = urlencode([(k, v) for k, v in query if k != "channel"])
    return urlunsplit(parts._replace(query=rest)), channel


class RedisSource:
    """Serves JSON-RPC publish requests that arrive on one Redis pub/sub channel."""

    def __init__(
        self,
        url: str,
        node: Node,
        *,
        max_channel_length: int,
        max_batch_size: int,
        max_nesting_depth: int = jsonrpc.MAX_NESTING_DEPTH,
        timed: bool = True,
    ) -> None:
        """Parse ``url`` (raises ConfigError); no I/O until ``start``.  Publications and
        calls are counted in ``node.stats`` (calls only when ``timed``: METRICS on)."""
        redis_url, self.channel = split_source_url(url)
        self.url = url
        self._local = Node(node.hub, MemoryBroker(), stats=node.stats)
        self._context = rpc.BackendContext(self._local, max_channel_length, source="redis")
        self._stats = node.stats.rpc["redis"] if timed else None
        self._max_batch = max_batch_size
        self._max_depth = max_nesting_depth
        self._subscriber = Subscriber(
            connection_kwargs(redis_url), self._on_message, name="redis message source"
        )
        self.received = 0
        self.invalid = 0

    def start(self) -> None:
        """Subscribe the source channel (in the background; reconnects by itself)."""
        self._local.start()
        self._subscriber.add(self.channel.encode())
        self._subscriber.start()

    def close(self) -> None:
        self._subscriber.close()

    def _on_message(self, _channel: bytes, data: bytes) -> None:
        self.received += 1
        problems = self.handle(data)
        if problems:
            self.invalid += 1
            logger.warning(
                "redis message source: invalid message on %r (%s); %d invalid of %d so far",
                self.channel,
                "; ".join(problems),
                self.invalid,
                self.received,
            )

    def handle(self, data: bytes) -> list[str]:
        """Serve one message; return what was wrong with it (empty when all went well)."""
        try:
            parsed = jsonrpc.parse(data, self._max_depth)
        except jsonrpc.ParseError as exc:
            return [f"parse error: {exc}"]
        if len(parsed.entries) > self._max_batch:
            return [f"batch of {len(parsed.entries)} exceeds max_batch_size {self._max_batch}"]
        problems = []
        for entry in parsed.entries:
            if isinstance(entry, jsonrpc.Invalid):
                problems.append(f"invalid request: {entry.reason}")
                continue
            # Served like a request, so that a notification's error is seen (and logged).
            outcome = rpc.serve(entry, SOURCE_METHODS, self._context, self._stats)
            if isinstance(outcome, jsonrpc.ErrorResponse):
                problems.append(f"{entry.method}: {outcome.message} {outcome.data}")
        return problems
