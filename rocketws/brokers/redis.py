"""The Redis broker: many RocketWS nodes joined through Redis pub/sub.

URL: ``redis://[:password@]host[:port][/db][?option=value...]``; RocketWS options:

- ``prefix`` (default ``rocketws:``): namespace of every key and channel, so several
  clusters can share one Redis.
- ``presence_ttl`` (seconds, default 5): a dead node stops counting within it.
- ``unsubscribe_delay`` (seconds, default 0.5): a channel that loses its last local
  subscriber stays subscribed this long, absorbing churn.
- ``timeout`` (seconds, default 1): bound on every Redis command and connect (a timed-out
  connect is tried once more; a reply waiting when its timeout fires is read).
- ``presence_heartbeat`` (seconds, default 10) and ``presence_expiry`` (seconds, default
  3 heartbeats): channel presence (namespaces with ``presence``) is rewritten every
  heartbeat; a dead node's clients leave it within the expiry (redis_channel_presence).

A RocketWS channel ``chat`` is the Redis channel ``<prefix>ch:chat``; broadcasts travel on
``<prefix>broadcast``, which every node subscribes.  ``publish`` sends the publication to
Redis once, and every subscribed node (the publisher's too) delivers it when Redis hands
it back, through ``handler.deliver`` — so all nodes see one order per channel and nothing
is delivered twice.  The sender to skip travels in the envelope (see ``envelope``).

Control commands (``disconnect``/``subscribe``/``unsubscribe``/``refresh`` for one user)
travel on ``<prefix>control``, which every node subscribes.  The requester PUBLISHes once;
Redis answers with how many subscribers received it (the live nodes, its own included),
and each node answers on the requester's ``<prefix>reply:<node id>`` with the number of
connections it reached.  ``control`` sums the answers, waiting at most ``timeout`` for
all of them: a node that does not answer in time (or a foreign client subscribed to the
control channel) makes the count a lower bound, never an overcount.

When Redis is unreachable: publishes and cluster queries raise BrokerUnavailable within
the timeout; subscribe/unsubscribe only record the wish; the subscriber reconnects with
backoff capped at 0.5 s and resubscribes every wanted channel.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import gevent
import gevent.event

from rocketws.brokers import envelope, redis_streams
from rocketws.brokers.base import (
    STREAM_LIMITS,
    BrokerHandler,
    ClientInfo,
    Control,
    Emit,
    History,
    Position,
    PresenceStats,
    Publication,
    Published,
    Stream,
    StreamLimits,
    new_node_id,
)
from rocketws.brokers.memory_streams import new_epoch
from rocketws.brokers.redis_channel_presence import ChannelPresence, PresenceWriter
from rocketws.brokers.redis_info import InfoBoard
from rocketws.brokers.redis_io import Client, RedisDown, Subscriber, connection_kwargs
from rocketws.brokers.redis_presence import Presence
from rocketws.core.exceptions import BrokerUnavailable, ConfigError
from rocketws.core.stats import BrokerStats

logger = logging.getLogger(__name__)

_OPTIONS = {"prefix", "presence_ttl", "unsubscribe_delay", "timeout", "presence_heartbeat", "presence_expiry"}


def split_url(url: str) -> tuple[str, dict[str, str]]:
    """Split RocketWS options off a Redis URL: (URL for redis-py, options)."""
    parts = urlsplit(url)
    ours: dict[str, str] = {}
    theirs: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        (ours.__setitem__(key, value) if key in _OPTIONS else theirs.append((key, value)))
    return urlunsplit(parts._replace(query=urlencode(theirs))), ours


def _seconds(url: str, name: str, value: str | None, default: float) -> float:
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not number >= 0:
        raise ConfigError("broker", url, f"{name} must be a number of seconds >= 0")
    return number


class _Replies:
    """The answers to one control request, as they arrive."""

    __slots__ = ("received", "total", "expected", "done")

    def __init__(self) -> None:
        self.received = 0
        self.total = 0
        self.expected: int | None = None  # known once PUBLISH returns
        self.done = gevent.event.Event()

    def add(self, count: int) -> None:
        self.received += 1
        self.total += count
        self._check()

    def expect(self, nodes: int) -> None:
        self.expected = nodes
        self._check()

    def _check(self) -> None:
        if self.expected is not None and self.received >= self.expected:
            self.done.set()


def _resubscribing() -> BrokerUnavailable:
    return BrokerUnavailable({"broker": "redis", "reason": "resubscribing to Redis after an outage; retry"})


class RedisBroker:
    """A Broker on Redis pub/sub, with cluster-wide counts kept in Redis."""

    def __init__(self, url: str, *, node_id: str | None = None, limits: StreamLimits = STREAM_LIMITS) -> None:
        """Parse ``url`` (raises ConfigError); no I/O until ``start``."""
        redis_url, options = split_url(url)
        kwargs = connection_kwargs(redis_url)
        self.url = url
        self.prefix = options.get("prefix", "rocketws:")
        self.presence_ttl = _seconds(url, "presence_ttl", options.get("presence_ttl"), 5.0)
        self.unsubscribe_delay = _seconds(url, "unsubscribe_delay", options.get("unsubscribe_delay"), 0.5)
        self.timeout = _seconds(url, "timeout", options.get("timeout"), 1.0)
        if self.presence_ttl <= 0 or self.timeout <= 0:
            raise ConfigError("broker", url, "presence_ttl and timeout must be above 0")
        self.presence_heartbeat = _seconds(url, "presence_heartbeat", options.get("presence_heartbeat"), 10.0)
        self.presence_expiry = _seconds(
            url, "presence_expiry", options.get("presence_expiry"), 3 * self.presence_heartbeat
        )
        if not 0 < self.presence_heartbeat < self.presence_expiry:
            raise ConfigError("broker", url, "presence_expiry must be above presence_heartbeat, above 0")
        self.node_id = node_id or new_node_id()
        self._kwargs = kwargs
        self._channel_prefix = f"{self.prefix}ch:".encode()
        self._broadcast = f"{self.prefix}broadcast".encode()
        self._control = f"{self.prefix}control".encode()
        self._reply = f"{self.prefix}reply:".encode()
        self._replies: dict[str, _Replies] = {}
        self._client = Client(kwargs, timeout=self.timeout, connect_timeout=self.timeout)
        self._presence = Presence(self._client, self.prefix, self.node_id, self.presence_ttl)
        self._subscriber = Subscriber(
            kwargs,
            self._on_message,
            name=f"redis broker {self.node_id}",
            connect_timeout=self.timeout,
        )
        self._channel_presence = ChannelPresence(
            self._client, self.prefix, self.node_id, self.presence_expiry
        )
        self._presence_writer = PresenceWriter(
            self._channel_presence, self.presence_heartbeat, lambda: self._subscriber.reconnects
        )
        self._handler: BrokerHandler | None = None
        self._presence_loop: gevent.Greenlet | None = None
        self._presence_wake = gevent.event.Event()
        self.bad_messages = 0
        self.limits = limits
        self._prefix_bytes = self.prefix.encode()
        self._node_bytes = self.node_id.encode()
        self._window_ms = b"%d" % max(1, int(limits.idempotency_window * 1000))
        self._stream_cache: dict[Stream | None, tuple[bytes, bytes, bytes]] = {}
        self._stats = BrokerStats()
        self._info = InfoBoard(self._client, self.prefix, self.node_id, self.presence_ttl)
        self._info_loop: gevent.Greenlet | None = None

    kind = "redis"

    def __repr__(self) -> str:
        return f"<RedisBroker {self.node_id} prefix={self.prefix!r}>"

    @property
    def stats(self) -> BrokerStats:
        """Publish latency and failures (kept by ``publish``), reconnects and whether the
        pub/sub connection is up (read from the subscriber now)."""
        stats = self._stats
        stats.reconnects = self._subscriber.reconnects
        stats.connected = self._subscriber.connected.is_set()
        return stats

    def nodes_info(self) -> list[dict[str, Any]]:
        """The other live nodes' info records (each as of its last heartbeat).

        Raises BrokerUnavailable."""
        try:
            return self._info.read_others()
        except RedisDown as exc:
            raise BrokerUnavailable({"broker": "redis", "reason": f"Redis is unreachable: {exc}"}) from None

    # -- Broker -----------------------------------------------------------------------

    def start(self, handler: BrokerHandler) -> None:
        """Connect and subscribe the broadcast channel (waits up to ``timeout`` for it).

        If Redis is down the node still starts; it joins as soon as Redis answers.
        """
        self._handler = handler
        own = (self._broadcast, self._control, self._reply + self.node_id.encode())
        for channel in own:
            self._subscriber.add(channel)
        self._subscriber.start()
        self._presence_loop = gevent.spawn(self._keep_presence)
        self._presence_writer.start(handler)
        self._info_loop = gevent.spawn(self._keep_info)
        deadline = time.monotonic() + self.timeout
        while not all(self._subscriber.is_subscribed(channel) for channel in own):
            if time.monotonic() >= deadline:
                logger.warning("Redis broker %s: Redis not reachable yet; will keep trying", self.node_id)
                break
            gevent.sleep(0.005)

    def publish(self, publication: Publication) -> int:
        """Publish once to Redis; return the best known count of subscribers reached.

        The count is this node's exact local count plus the other nodes' counts as of
        their last presence write.  Raises BrokerUnavailable if Redis does not accept it;
        then nothing was delivered anywhere, so the caller may retry.
        """
        handler = self._node()
        channel = publication.channel
        if channel is None:
            redis_channel = self._broadcast
        else:
            redis_channel = self._channel_prefix + channel.encode()
        self._check_caught_up()
        started = time.perf_counter()
        try:
            remote = self._presence.publish(redis_channel, envelope.encode(publication), channel)
        except RedisDown as exc:
            self._stats.errors += 1
            raise BrokerUnavailable({"broker": "redis", "reason": f"Redis is unreachable: {exc}"}) from None
        self._stats.publish.observe(time.perf_counter() - started)
        return self._local(handler, publication, redis_channel) + remote

    def _local(self, handler: BrokerHandler, publication: Publication, redis_channel: bytes) -> int:
        """This node's subscribers a publication reaches: none while its subscription is
        not confirmed (then Redis would not hand the publication back to this node)."""
        if not self._subscriber.is_subscribed(redis_channel):
            return 0
        local = handler.local_subscribers(publication.channel)
        if publication.skip is not None and local:
            local -= 1  # the sender is a local subscriber (send_data requires it)
        return local

    def _check_caught_up(self) -> None:
        """Raises BrokerUnavailable until the subscriber has (re)subscribed every wanted
        channel: a node reports itself able to publish only once it hears them all."""
        if not self._subscriber.caught_up():
            self._stats.errors += 1
            raise _resubscribing()

    def ready(self) -> bool:
        """Whether this node hears every channel it wants (the /health answer)."""
        return self._subscriber.caught_up()

    # -- history (issue 11; redis_streams) ---------------------------------------------

    def publish_many(self, emits: list[Emit]) -> list[Published | Exception]:
        """Publish ``emits`` in one pipeline, one round trip: each run of plain emits (no
        history, no idempotency key) is one ``PUBLISH_MANY`` script, each other emit one
        ``redis_streams.PUBLISH`` script; Redis runs them in order.  ``stats``: the round
        trip is one publish latency; each emit refused one failed publish."""
        handler = self._node()
        if not self._subscriber.caught_up():
            self._stats.errors += len(emits)
            return [_resubscribing()] * len(emits)
        prefix, node, window = self._prefix_bytes, self._node_bytes, self._window_ms
        calls: list[tuple[str, tuple[object, ...]]] = []
        spans: list[tuple[int, int]] = []  # per call: (first emit, emits in it)
        plain: list[object] | None = None  # the ARGV of the open PUBLISH_MANY run
        for i, (publication, stream, key) in enumerate(emits):
            channel = publication.channel
            if channel is None:
                redis_channel = self._broadcast
                field = b""
            else:
                field = channel.encode()
                redis_channel = self._channel_prefix + field
            if (stream is None and key is None) or channel is None:
                if plain is None:
                    plain = [prefix, node]
                    calls.append((redis_streams.PUBLISH_MANY, ()))
                    spans.append((i, 0))
                plain += (redis_channel, envelope.encode(publication), field)
                first, count = spans[-1]
                spans[-1] = (first, count + 1)
                continue
            if plain is not None:
                calls[-1] = (redis_streams.PUBLISH_MANY, tuple(plain))
                plain = None
            size, ttl_ms, meta_ms = self._stream_args(stream)
            spans.append((i, 1))
            calls.append(
                (
                    redis_streams.PUBLISH,
                    (
                        prefix,
                        node,
                        redis_channel,
                        envelope.header_open(publication),
                        publication.payload,
                        field,
                        self._local(handler, publication, redis_channel),
                        size,
                        ttl_ms,
                        meta_ms,
                        new_epoch(),
                        prefix + b"h:" + field,
                        prefix + b"m:" + field,
                        b"" if key is None else redis_streams.idempotency_key(self.prefix, channel, key),
                        window,
                    ),
                )
            )
        if plain is not None:
            calls[-1] = (redis_streams.PUBLISH_MANY, tuple(plain))
        started = time.perf_counter()
        try:
            replies = self._client.scripts(calls)
        except RedisDown as exc:
            self._stats.errors += len(emits)
            down = BrokerUnavailable({"broker": "redis", "reason": f"Redis is unreachable: {exc}"})
            return [down] * len(emits)
        self._stats.publish.observe(time.perf_counter() - started)  # one round trip
        answers: list[Published | Exception] = []
        for (source, _args), (first, count), reply in zip(calls, spans, replies, strict=True):
            if isinstance(reply, Exception):
                logger.error("Redis broker: a publish script failed: %s", reply)
                refused = BrokerUnavailable({"broker": "redis", "reason": f"Redis refused it: {reply}"})
                self._stats.errors += count
                answers += [refused] * count
            elif source is redis_streams.PUBLISH_MANY:
                for emit, remote in zip(emits[first : first + count], reply, strict=True):
                    channel = emit.publication.channel
                    sent_on = self._broadcast if channel is None else self._channel_prefix + channel.encode()
                    answers.append(Published(self._local(handler, emit.publication, sent_on) + int(remote)))
            else:
                answers.append(Published(*redis_streams.parse_answer(reply[1])))
        return answers

    def _stream_args(self, stream: Stream | None) -> tuple[bytes, bytes, bytes]:
        """(size, TTL ms, meta TTL ms) of ``stream`` as script arguments (cached)."""
        args = self._stream_cache.get(stream)
        if args is None:
            size, ttl = (0, 0.0) if stream is None else stream
            meta = max(ttl, self.limits.meta_ttl)
            args = b"%d" % size, b"%d" % max(1, int(ttl * 1000)), b"%d" % max(1, int(meta * 1000))
            if len(self._stream_cache) < 64:  # one entry per namespace option pair
                self._stream_cache[stream] = args
        return args

    def history(self, channel: str, since: Position | None, limit: int, reverse: bool = False) -> History:
        """Read ``channel``'s stream in one script (its epoch made if it has none)."""
        self._node()
        stream_key, meta_key = redis_streams.keys(self.prefix, channel)
        args = (
            meta_key,
            stream_key,
            new_epoch(),
            max(1, int(self.limits.meta_ttl * 1000)),
            "" if since is None else since.offset,
            limit,
            "1" if reverse else "0",
            "" if since is None else since.epoch,
        )
        try:
            (reply,) = self._client.scripts([(redis_streams.READ, args)])
        except RedisDown as exc:
            raise BrokerUnavailable({"broker": "redis", "reason": f"Redis is unreachable: {exc}"}) from None
        if isinstance(reply, Exception):
            raise BrokerUnavailable({"broker": "redis", "reason": f"Redis refused the read: {reply}"})
        return History(redis_streams.parse_entries(reply[2:]), int(reply[1]), reply[0].decode())

    def confirmed(self, channel: str) -> bool:
        return self._subscriber.is_subscribed(self._channel_prefix + channel.encode())

    def control(self, control: Control) -> int:
        """Publish ``control`` once; return the connections the nodes report reaching.

        Waits at most ``timeout`` for every node that received it to answer (see the
        module docstring).  Raises BrokerUnavailable if Redis does not accept it.
        """
        self._node()
        request_id = uuid.uuid4().hex
        replies = self._replies[request_id] = _Replies()
        try:
            message = envelope.encode_control(control, request_id, self.node_id)
            try:
                nodes = int(self._client.execute("PUBLISH", self._control, message))
            except RedisDown as exc:
                raise BrokerUnavailable(
                    {"broker": "redis", "reason": f"Redis is unreachable: {exc}"}
                ) from None
            replies.expect(nodes)
            if not replies.done.wait(self.timeout):
                logger.info(
                    "Redis broker: %d of %d node(s) answered %s for a user within %.2f s; "
                    "the count is a lower bound",
                    replies.received,
                    nodes,
                    control.action,
                    self.timeout,
                )
            return replies.total
        finally:
            del self._replies[request_id]

    def subscribe(self, channel: str) -> None:
        """Subscribe in Redis; waits (≤ timeout) for Redis to confirm when connected."""
        self._subscriber.add(self._channel_prefix + channel.encode(), wait=self.timeout)
        self._presence_wake.set()

    def unsubscribe(self, channel: str) -> None:
        """Unsubscribe in Redis after ``unsubscribe_delay`` unless resubscribed first."""
        self._subscriber.remove(self._channel_prefix + channel.encode(), self.unsubscribe_delay)
        self._presence_wake.set()

    def channels(self) -> list[str]:
        """Sorted channels with a subscriber on any live node.  May raise BrokerUnavailable."""
        local = self._node().local_channels()
        _, remote = self._others()
        return sorted({ch for ch, n in local.items() if n} | {ch for ch, n in remote.items() if n})

    def subscribers(self, channel: str | None = None) -> int:
        """Subscribers of ``channel`` (or open connections) on all live nodes.

        May raise BrokerUnavailable.
        """
        local = self._node().local_subscribers(channel)
        conns, remote = self._others()
        return local + (conns if channel is None else remote.get(channel, 0))

    # -- channel presence (redis_channel_presence.py) ----------------------------------

    def presence_update(self, channel: str, client: str) -> None:
        """Queue the change for the background writer (never blocks)."""
        self._presence_writer.changed(channel, client)

    def publish_later(self, publication: Publication) -> None:
        """Queue the PUBLISH for the background writer, after the changes before it."""
        if publication.channel is None:
            redis_channel = self._broadcast
        else:
            redis_channel = self._channel_prefix + publication.channel.encode()
        self._presence_writer.publish(redis_channel, envelope.encode(publication))

    def presence(self, channel: str) -> dict[str, ClientInfo]:
        """This node's subscribers exactly, the other nodes' as of their last write (live
        entries only).  Raises BrokerUnavailable."""
        local = self._node().local_presence(channel)
        try:
            remote = self._channel_presence.read(channel)
        except RedisDown as exc:
            raise BrokerUnavailable({"broker": "redis", "reason": f"Redis is unreachable: {exc}"}) from None
        remote.update(local)
        return remote

    def presence_stats(self, channel: str) -> PresenceStats:
        """``presence`` counted (users counted in Redis, not sent).  Raises BrokerUnavailable."""
        local = self._node().local_presence(channel)
        try:
            clients, users = self._channel_presence.stats(channel)
        except RedisDown as exc:
            raise BrokerUnavailable({"broker": "redis", "reason": f"Redis is unreachable: {exc}"}) from None
        users.update(entry.user for entry in local.values() if entry.user)
        return PresenceStats(clients + len(local), len(users))

    def close(self) -> None:
        """Stop listening and remove this node's presence (best effort)."""
        if self._presence_loop is not None:
            self._presence_loop.kill(block=True, timeout=2)
        self._presence_writer.close()
        if self._info_loop is not None:
            self._info_loop.kill(block=True, timeout=2)
        try:
            self._presence.clear()
            self._info.clear()
        except RedisDown:
            pass  # the keys expire within the TTL
        self._subscriber.close()
        self._client.close()
        self._handler = None

    # -- internals --------------------------------------------------------------------

    def _node(self) -> BrokerHandler:
        if self._handler is None:
            raise RuntimeError("RedisBroker used before start() or after close()")
        return self._handler

    def _others(self) -> tuple[int, dict[str, int]]:
        try:
            return self._presence.others()
        except RedisDown as exc:
            raise BrokerUnavailable({"broker": "redis", "reason": f"Redis is unreachable: {exc}"}) from None

    def _on_message(self, redis_channel: bytes, data: bytes) -> None:
        if redis_channel == self._broadcast:
            channel = None
        elif redis_channel.startswith(self._channel_prefix):
            channel = redis_channel[len(self._channel_prefix) :].decode("utf-8", "replace")
        else:
            try:
                if redis_channel == self._control:
                    self._on_control(data)
                elif redis_channel.startswith(self._reply):
                    self._on_reply(data)
            except envelope.EnvelopeError as exc:
                self._dropped(redis_channel, exc)
            return
        try:
            publication = envelope.decode(data, channel)
        except envelope.EnvelopeError as exc:
            self._dropped(redis_channel, exc)
            return
        handler = self._handler
        if handler is not None:
            handler.deliver(publication)

    def _dropped(self, redis_channel: bytes, exc: Exception) -> None:
        self.bad_messages += 1
        logger.warning(
            "Redis broker: dropped a message on %r that is not a RocketWS envelope (%s); %d so far",
            redis_channel,
            exc,
            self.bad_messages,
        )

    def _on_control(self, data: bytes) -> None:
        """Apply a control command here, then answer the node that sent it.

        In a greenlet of its own: a ``subscribe`` waits for Redis to confirm the channel,
        which only the subscriber's reader (the caller) can see.
        """
        control, request_id, reply_to = envelope.decode_control(data)
        if self._handler is not None:
            gevent.spawn(self._apply, control, request_id, reply_to)

    def _apply(self, control: Control, request_id: str, reply_to: str) -> None:
        handler = self._handler
        if handler is None:
            return
        try:
            count = handler.apply_control(control)
        except Exception:
            logger.exception("Redis broker: applying a %s command failed", control.action)
            count = 0
        if reply_to == self.node_id:
            replies = self._replies.get(request_id)
            if replies is not None:
                replies.add(count)
        else:
            self._answer(reply_to, request_id, count)

    def _answer(self, node_id: str, request_id: str, count: int) -> None:
        try:
            self._client.execute(
                "PUBLISH", self._reply + node_id.encode(), envelope.encode_reply(request_id, count)
            )
        except RedisDown as exc:
            logger.debug("Redis broker: could not answer a control request: %s", exc)

    def _on_reply(self, data: bytes) -> None:
        request_id, count = envelope.decode_reply(data)
        replies = self._replies.get(request_id)
        if replies is not None:  # else: it came after the requester stopped waiting
            replies.add(count)

    def _heard(self, handler: BrokerHandler) -> tuple[int, dict[str, int]]:
        """This node's counts as other nodes may add them to a publication's
        ``delivered``: only channels whose subscription Redis has confirmed."""
        subscribed = self._subscriber.is_subscribed
        prefix = self._channel_prefix
        connections = handler.local_subscribers(None) if subscribed(self._broadcast) else 0
        channels = {ch: n for ch, n in handler.local_channels().items() if subscribed(prefix + ch.encode())}
        return connections, channels

    def _keep_presence(self) -> None:
        """Rewrite this node's counts when they change, and every TTL/3 regardless."""
        handler = self._node()
        refresh = self.presence_ttl / 3
        poll = min(0.25, refresh)
        last: tuple[int, dict[str, int]] | None = None
        written_at = 0.0
        failing = False
        while True:
            snapshot = self._heard(handler)
            now = time.monotonic()
            if snapshot != last or now - written_at >= refresh:
                try:
                    self._presence.write(*snapshot)
                except RedisDown as exc:
                    if not failing:
                        logger.debug("Redis broker: presence write failed: %s", exc)
                    failing = True
                    last = None
                except Exception:
                    logger.exception("Redis broker: presence write failed")
                    last = None
                else:
                    failing = False
                    last, written_at = snapshot, now
            self._presence_wake.wait(poll)
            self._presence_wake.clear()
            gevent.sleep(0.01)  # coalesce bursts of (un)subscribes into one write

    def _keep_info(self) -> None:
        """The heartbeat of this node's info record: every TTL/3 (sooner after a failure)."""
        handler = self._node()
        period = self.presence_ttl / 3
        failing = False
        while True:
            try:
                self._info.write(handler.info())
            except RedisDown as exc:
                if not failing:
                    logger.debug("Redis broker: info write failed: %s", exc)
                failing = True
            except Exception:
                logger.exception("Redis broker: info write failed")
            else:
                failing = False
            gevent.sleep(min(period, 0.25) if failing else period)
