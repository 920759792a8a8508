"""RedisBroker beyond the shared contract: several nodes, presence, outages, bounds.

Two brokers in this process share one private redis-server, each with a FakeNode, so
cross-node behaviour is tested without server processes (those are in test_redis_e2e).
"""

from __future__ import annotations

import signal
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import gevent
import gevent.server
import pytest

from rocketws.brokers import Publication, create_broker, redis_io
from rocketws.brokers.base import ClientInfo, Emit, PresenceStats, Stream
from rocketws.brokers.redis import RedisBroker
from rocketws.brokers.redis_io import Client, Subscriber, connection_kwargs, make_connection, pack_commands
from rocketws.core.exceptions import BrokerUnavailable, ConfigError

from .fakes import FakeNode
from .redis_fixtures import RedisServer
from .support import free_port, wait_in_hub

Pair = tuple[RedisBroker, FakeNode, RedisBroker, FakeNode]


def _pair(url: str, **extra: str) -> Pair:
    options = {"prefix": f"t{uuid.uuid4().hex[:8]}:", **extra}
    query = "&".join(f"{k}={v}" for k, v in options.items())
    a, b = RedisBroker(f"{url}?{query}"), RedisBroker(f"{url}?{query}")
    node_a, node_b = FakeNode(), FakeNode()
    a.start(node_a)
    b.start(node_b)
    return a, node_a, b, node_b


@pytest.fixture
def pair(redis_server: RedisServer) -> Iterator[Pair]:
    brokers = _pair(redis_server.url, presence_ttl="1")
    try:
        yield brokers
    finally:
        brokers[0].close()
        brokers[2].close()


def test_redis_broker_publication_reaches_other_node_once(pair: Pair) -> None:
    a, node_a, b, node_b = pair
    a.subscribe("chat")
    b.publish(Publication("chat", b'{"n":1}', skip="sender-on-b"))
    wait_in_hub(lambda: node_a.delivered, what="delivery on A")
    b.publish(Publication(None, b'{"marker":1}'))  # broadcasts reach A after the first
    wait_in_hub(lambda: len(node_a.delivered) == 2, what="marker on A")
    assert node_a.delivered == [
        Publication("chat", b'{"n":1}', "sender-on-b"),
        Publication(None, b'{"marker":1}'),
    ]
    assert node_b.payloads("chat") == []  # B never subscribed "chat"


def test_redis_broker_broadcast_reaches_every_node_once(pair: Pair) -> None:
    a, node_a, b, node_b = pair
    a.publish(Publication(None, b'{"all":1}'))
    a.publish(Publication(None, b'{"all":2}'))
    wait_in_hub(lambda: len(node_a.delivered) == 2 and len(node_b.delivered) == 2, what="broadcasts")
    assert node_a.payloads() == node_b.payloads() == [b'{"all":1}', b'{"all":2}']


def test_redis_broker_counts_are_cluster_wide(pair: Pair) -> None:
    a, node_a, b, node_b = pair
    node_a.channels, node_a.connections = {"chat": 2}, 3
    node_b.channels, node_b.connections = {"chat": 1, "news": 4}, 5
    for broker, node in ((a, node_a), (b, node_b)):
        for channel in node.channels:
            broker.subscribe(channel)
    wait_in_hub(lambda: a.subscribers() == 8 and b.subscribers() == 8, what="presence")
    assert a.channels() == b.channels() == ["chat", "news"]
    assert a.subscribers("chat") == 3 and b.subscribers("news") == 4
    assert a.publish(Publication("chat", b"{}")) == 3
    assert a.publish(Publication("chat", b"{}", skip="s")) == 2
    assert b.publish(Publication(None, b"{}")) == 8
    node_b.channels = {"chat": 1}
    b.unsubscribe("news")
    wait_in_hub(lambda: a.channels() == ["chat"], what="news gone")


def test_redis_broker_dead_node_stops_counting_within_ttl(redis_server: RedisServer, pair: Pair) -> None:
    """A node that stopped refreshing (its presence written by hand, TTL 0.5 s) expires."""
    a, node_a, b, node_b = pair
    ghost = f"{a.prefix}node:ghost"
    redis_server.command("SADD", f"{a.prefix}nodes", "ghost")
    redis_server.command("SET", ghost, "7", "PX", "500")
    redis_server.command("HSET", f"{ghost}:ch", "chat", "7")
    redis_server.command("PEXPIRE", f"{ghost}:ch", "500")
    written = time.monotonic()
    assert a.subscribers("chat") == 7 and a.channels() == ["chat"]
    wait_in_hub(lambda: a.subscribers("chat") == 0, timeout=3, what="ghost expired")
    assert time.monotonic() - written <= 0.5 + 0.2
    assert a.channels() == [] and a.subscribers() == 0
    assert b"ghost" not in redis_server.command("SMEMBERS", f"{a.prefix}nodes")


def _numsub(server: RedisServer, channel: str) -> int:
    reply = server.command("PUBSUB", "NUMSUB", channel)  # *2 $len name :N
    return int(reply.rsplit(b":", 1)[1].strip())


def test_redis_broker_unsubscribe_is_delayed_and_absorbs_churn(redis_server: RedisServer) -> None:
    a, node_a, b, node_b = _pair(redis_server.url, unsubscribe_delay="0.3")
    try:
        chan, probe = f"{a.prefix}ch:room", f"{a.prefix}ch:probe"
        a.subscribe("room")
        a.subscribe("probe")
        assert _numsub(redis_server, chan) == 1 and _numsub(redis_server, probe) == 1
        a.unsubscribe("room")
        a.subscribe("room")  # churn: resubscribed within the delay
        a.unsubscribe("probe")  # due after room's delay: once it is sent, room's would be
        wait_in_hub(lambda: _numsub(redis_server, probe) == 0, timeout=2, what="probe unsubscribe")
        assert _numsub(redis_server, chan) == 1
        a.unsubscribe("room")
        assert _numsub(redis_server, chan) == 1  # still subscribed during the delay
        wait_in_hub(lambda: _numsub(redis_server, chan) == 0, timeout=2, what="unsubscribe")
    finally:
        a.close()
        b.close()


def test_redis_broker_ignores_foreign_messages_on_its_channels(redis_server: RedisServer) -> None:
    a, node_a, b, node_b = _pair(redis_server.url)
    try:
        a.subscribe("chat")
        redis_server.command("PUBLISH", f"{a.prefix}ch:chat", "not an envelope")
        b.publish(Publication("chat", b'{"ok":1}'))
        wait_in_hub(lambda: node_a.delivered, what="valid delivery")
        assert node_a.payloads() == [b'{"ok":1}'] and a.bad_messages == 1
    finally:
        a.close()
        b.close()


def test_redis_broker_survives_outage_and_resumes_within_2s(private_redis: RedisServer) -> None:
    a, node_a, b, node_b = _pair(private_redis.url)
    try:
        a.subscribe("live")
        b.publish(Publication("live", b'{"before":1}'))
        wait_in_hub(lambda: node_a.delivered, what="delivery before outage")
        private_redis.stop()
        started = time.monotonic()
        with pytest.raises(BrokerUnavailable) as info:
            b.publish(Publication("live", b'{"during":1}'))
        assert time.monotonic() - started < 1.5
        data = info.value.data
        assert info.value.code == -32002 and data is not None and "Redis" in data["reason"]
        with pytest.raises(BrokerUnavailable):
            a.channels()
        started = time.monotonic()
        a.subscribe("new-during-outage")  # recorded, does not block
        a.unsubscribe("new-during-outage")
        a.subscribe("other")
        assert time.monotonic() - started < 0.1
        private_redis.start()

        def publish_delivered() -> list[bytes]:
            """Publish once; the deliveries so far (a delivery shows the subscription is back)."""
            try:
                b.publish(Publication("other", b'{"after":1}'))
            except BrokerUnavailable:
                pass
            return node_a.payloads("other")

        wait_in_hub(publish_delivered, timeout=2.0, what="delivery resumed after the restart")
        assert b"during" not in b"".join(node_a.payloads())
        b.publish(Publication("live", b'{"after":2}'))
        wait_in_hub(lambda: b'{"after":2}' in node_a.payloads("live"), what="old channel back")
    finally:
        a.close()
        b.close()


def test_redis_broker_slow_redis_fails_publish_without_blocking_hub() -> None:
    """A server that accepts but never answers: publish is refused at once (the node has
    not heard its subscriptions confirmed: not ready), a read gives up after the timeout."""
    silent = gevent.server.StreamServer(("127.0.0.1", 0), lambda sock, addr: gevent.sleep(30))
    silent.start()
    ticks = 0

    def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            gevent.sleep(0.01)

    ticker = gevent.spawn(tick)
    broker = RedisBroker(f"redis://127.0.0.1:{silent.server_port}/0?timeout=0.5")
    try:
        broker.start(FakeNode())
        with pytest.raises(BrokerUnavailable, match="resubscribing"):
            broker.publish(Publication("chat", b"{}"))
        assert not broker.ready()
        started = time.monotonic()
        ticks = 0
        with pytest.raises(BrokerUnavailable):
            broker.history("chat", None, 10)
        elapsed = time.monotonic() - started
        assert 0.4 <= elapsed < 1.5
        assert ticks >= 20  # the hub kept running other greenlets meanwhile
    finally:
        ticker.kill()
        broker.close()
        silent.stop()


def test_redis_broker_bad_url_and_missing_redis_py_are_config_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="presence_ttl"):
        create_broker("redis://127.0.0.1:6379/0?presence_ttl=soon")
    with pytest.raises(ValueError, match="unsupported broker"):
        create_broker("kafka://x")
    monkeypatch.setitem(sys.modules, "redis", None)  # import redis -> ImportError
    monkeypatch.setattr("rocketws.brokers.redis_io._connection_class", None)
    with pytest.raises(ConfigError, match=r"pip install 'rocketws\[redis\]'"):
        create_broker("redis://127.0.0.1:6379/0")


def test_redis_broker_start_with_redis_down_does_not_block_long() -> None:
    port = free_port()  # nothing listens here
    broker = RedisBroker(f"redis://127.0.0.1:{port}/0?timeout=0.3")
    started = time.monotonic()
    broker.start(FakeNode())
    broker.subscribe("chat")
    assert time.monotonic() - started < 1.0
    with pytest.raises(BrokerUnavailable):
        broker.publish(Publication("chat", b"{}"))
    broker.close()


# -- channel presence across nodes (redis_channel_presence.py) ---------------------------------

ALICE = ClientInfo("c-alice", "alice", {"name": "Alice", "big": 2**70, "text": "line\nbreak"}, None)
ALICE_ON_B = ClientInfo("c-alice-b", "alice", None, {"role": "mod"})
BOB = ClientInfo("c-bob", 'bob\n"quoted"', [1, 2.5, None], None)
ANON = ClientInfo("c-anon", "", None, None)


def _join(broker: RedisBroker, node: FakeNode, channel: str, *entries: ClientInfo) -> None:
    for entry in entries:
        node.presence.setdefault(channel, {})[entry.client] = entry
        broker.presence_update(channel, entry.client)


def _leave(broker: RedisBroker, node: FakeNode, channel: str, entry: ClientInfo) -> None:
    del node.presence[channel][entry.client]
    broker.presence_update(channel, entry.client)


def test_redis_presence_of_another_node_with_info_and_users(pair: Pair) -> None:
    a, node_a, b, node_b = pair
    _join(a, node_a, "room", ALICE, BOB, ANON)
    everyone = {e.client: e for e in (ALICE, BOB, ANON)}
    wait_in_hub(lambda: b.presence("room") == everyone, timeout=5, what="A's entries on B")
    assert b.presence_stats("room") == PresenceStats(3, 2)
    _join(b, node_b, "room", ALICE_ON_B)  # alice on both nodes: one user
    assert b.presence("room") == {**everyone, ALICE_ON_B.client: ALICE_ON_B}  # B's own: at once
    wait_in_hub(lambda: a.presence_stats("room") == PresenceStats(4, 2), timeout=5, what="B's entry on A")
    _leave(a, node_a, "room", BOB)
    wait_in_hub(lambda: BOB.client not in b.presence("room"), timeout=5, what="BOB gone on B")
    assert b.presence_stats("room") == PresenceStats(3, 1)


def test_redis_presence_join_push_follows_the_presence_write(pair: Pair) -> None:
    """A node that receives a join can read the joiner in presence (written first)."""
    a, node_a, b, node_b = pair
    b.subscribe("room")
    node_a.presence["room"] = {ALICE.client: ALICE}
    a.presence_update("room", ALICE.client)
    a.publish_later(Publication("room", b'{"method":"join"}', skip=ALICE.client))
    wait_in_hub(lambda: node_b.delivered, timeout=5, what="the join on B")
    assert b.presence("room") == {ALICE.client: ALICE}


def test_redis_presence_heartbeat_keeps_entries_past_their_expiry(redis_server: RedisServer) -> None:
    a, node_a, b, node_b = _pair(redis_server.url, presence_heartbeat="0.1", presence_expiry="0.3")
    try:
        _join(a, node_a, "room", ALICE)
        wait_in_hub(lambda: b.presence("room"), timeout=5, what="A's entry on B")
        first = a._presence_writer.heartbeats
        wait_in_hub(lambda: a._presence_writer.heartbeats >= first + 6, timeout=5, what="6 heartbeats")
        assert b.presence("room") == {ALICE.client: ALICE}  # 0.6 s later: refreshed
    finally:
        a.close()
        b.close()


def test_redis_presence_of_a_closed_node_is_removed_at_once(pair: Pair) -> None:
    a, node_a, b, node_b = pair
    _join(a, node_a, "room", ALICE, BOB)
    wait_in_hub(lambda: len(b.presence("room")) == 2, timeout=5, what="A's entries on B")
    a.close()  # the pair fixture closes it again: close is idempotent enough for that
    assert b.presence("room") == {}


def test_redis_presence_of_a_silent_node_expires(redis_server: RedisServer) -> None:
    """A node whose writer stopped (as if killed) disappears within presence_expiry."""
    a, node_a, b, node_b = _pair(redis_server.url, presence_heartbeat="0.1", presence_expiry="0.5")
    try:
        _join(a, node_a, "room", ALICE)
        wait_in_hub(lambda: b.presence("room"), timeout=5, what="A's entry on B")
        a._presence_writer._greenlet.kill()  # type: ignore[union-attr]
        stopped = time.monotonic()
        wait_in_hub(lambda: not b.presence("room"), timeout=5, what="A's entry expired")
        assert time.monotonic() - stopped <= 0.5 + 0.2
        assert b.presence_stats("room") == PresenceStats(0, 0)
        keys = redis_server.command("KEYS", f"{a.prefix}presence*")
        assert keys == b"*0\r\n"  # the read cleaned the expired entry, and the keys went with it
    finally:
        a._presence_writer._handler = None  # nothing left to remove at close
        a.close()
        b.close()


def test_redis_presence_comes_back_after_a_redis_restart(private_redis: RedisServer) -> None:
    a, node_a, b, node_b = _pair(private_redis.url)  # default heartbeat: 10 s
    try:
        _join(a, node_a, "room", ALICE, BOB)
        wait_in_hub(lambda: len(b.presence("room")) == 2, timeout=5, what="A's entries on B")
        private_redis.stop()
        with pytest.raises(BrokerUnavailable):
            b.presence("room")
        private_redis.start()  # no persistence: everything was lost

        def rewritten() -> bool:
            try:
                return len(b.presence("room")) == 2
            except BrokerUnavailable:  # a pooled connection from before the restart
                return False

        wait_in_hub(rewritten, timeout=5, what="entries rewritten")
    finally:
        a.close()
        b.close()


def test_redis_presence_heartbeat_of_many_channels_is_few_round_trips(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, node_a, b, node_b = _pair(redis_server.url)
    try:
        for i in range(2000):
            node_a.presence[f"room{i}"] = {f"c{i}-{j}": ClientInfo(f"c{i}-{j}", f"u{j}") for j in range(3)}
        trips: list[int] = []
        pipeline = a._client.pipeline

        def counted(commands: list[tuple[object, ...]]) -> list[object]:
            if commands and commands[0][0] == "EVALSHA":
                trips.append(len(commands))
            return pipeline(commands)

        monkeypatch.setattr(a._client, "pipeline", counted)
        a._presence_writer._flush(full=True)
        assert trips == [200] * 10  # 2,000 channels: one script call each, 200 per round trip
        assert b.presence_stats("room1999") == PresenceStats(3, 3)
    finally:
        a.close()
        b.close()


def test_redis_presence_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="presence_expiry"):
        create_broker("redis://127.0.0.1:6379/0?presence_heartbeat=5&presence_expiry=5")
    with pytest.raises(ConfigError, match="presence_heartbeat"):
        create_broker("redis://127.0.0.1:6379/0?presence_heartbeat=soon")
    broker = RedisBroker("redis://127.0.0.1:6379/0?presence_heartbeat=2")
    assert (broker.presence_heartbeat, broker.presence_expiry) == (2.0, 6.0)


def test_redis_presence_skips_entries_that_are_not_ours(pair: Pair) -> None:
    a, node_a, b, node_b = pair
    _join(a, node_a, "room", ALICE)
    wait_in_hub(lambda: b.presence("room"), timeout=5, what="A's entry on B")
    far = str(int(time.time() * 1000) + 60_000)
    redis_server_cmd = a._client.execute  # the same Redis, written by hand as a foreign client
    redis_server_cmd("ZADD", f"{a.prefix}presence:room", far, "junk")
    redis_server_cmd("HSET", f"{a.prefix}presence-info:room", "junk", "not an entry")
    assert b.presence("room") == {ALICE.client: ALICE}  # skipped (and counted), no error
    assert b._channel_presence.bad_entries == 1
    assert b.presence_stats("room") == PresenceStats(2, 1)  # a client, without a user


def test_redis_presence_writes_never_block_even_with_redis_down() -> None:
    """presence_update and publish_later run in event-loop callbacks (disconnects): they
    must not block, whatever Redis does (blocking there would raise in gevent)."""
    broker = RedisBroker(f"redis://127.0.0.1:{free_port()}/0?timeout=0.3")  # nothing listens
    node = FakeNode()
    broker.start(node)
    node.presence["room"] = {ALICE.client: ALICE}
    done: list[float] = []

    def in_the_loop() -> None:
        started = time.monotonic()
        broker.presence_update("room", ALICE.client)
        broker.publish_later(Publication("room", b'{"method":"leave"}'))
        done.append(time.monotonic() - started)

    gevent.get_hub().loop.run_callback(in_the_loop)
    wait_in_hub(lambda: done, what="the callback")
    assert done[0] < 0.01
    with pytest.raises(BrokerUnavailable):
        broker.presence("room")
    broker.close()


# -- the publish path of issue 11 ----------------------------------------------------------


def test_pack_commands_is_redis_py_packing_byte_for_byte() -> None:
    commands: list[tuple[Any, ...]] = [
        ("EVALSHA", "ab" * 20, 0, b"p:", "caf\u00e9", 7, 1.5, b"\x00\r\n", b""),
        ("PUBLISH", b"ch", b"x" * 70_000),
        ("PING",),
    ]
    conn = make_connection({"host": "127.0.0.1", "port": 1}, 1.0, 1.0)
    assert pack_commands(commands) == b"".join(conn.pack_commands(commands))
    with pytest.raises(TypeError):
        pack_commands([("SET", "k", True)])


def test_redis_broker_script_lost_by_a_restart_is_sent_again(private_redis: RedisServer) -> None:
    """NOSCRIPT after a Redis restart: the pipeline's scripts are sent again with EVAL."""
    node = FakeNode()
    broker = RedisBroker(f"{private_redis.url}?prefix=noscript:")
    broker.start(node)
    try:
        stream = Stream(10, 60.0)
        first = broker.publish_many([Emit(Publication("h", b'{"params":{"n":1}}'), stream)])
        assert not isinstance(first[0], Exception)
        private_redis.command("SCRIPT", "FLUSH")
        again = broker.publish_many([Emit(Publication("h", b'{"params":{"n":2}}'), stream) for _ in range(3)])
        assert [a.offset for a in again if not isinstance(a, Exception)] == [2, 3, 4]
    finally:
        broker.close()


def test_redis_publish_many_counts_one_latency_per_round_trip_and_each_refused_emit(
    private_redis: RedisServer,
) -> None:
    """metrics12's broker figures on issue 11's pipelined path: a batch of scripts is one
    publish round trip; with Redis gone every emit of the batch is a failed publish."""
    node = FakeNode()
    broker = RedisBroker(f"{private_redis.url}?prefix=stats{uuid.uuid4().hex[:6]}:&timeout=0.5")
    broker.start(node)
    try:
        stream = Stream(10, 60.0)
        emits = [Emit(Publication("h", b'{"params":{"n":%d}}' % i), stream) for i in range(3)]
        emits.append(Emit(Publication("plain", b'{"params":{}}')))
        answers = broker.publish_many(emits)
        assert not [a for a in answers if isinstance(a, Exception)], answers
        assert (broker.stats.publish.count, broker.stats.errors) == (1, 0)
        private_redis.stop()
        down = broker.publish_many(emits)
        assert all(isinstance(a, BrokerUnavailable) for a in down)
        assert broker.stats.errors == len(emits) and broker.stats.publish.count == 1
        with pytest.raises(BrokerUnavailable):
            broker.publish(Publication("plain", b"{}"))
        assert broker.stats.errors == len(emits) + 1
    finally:
        broker.close()


# -- the pub/sub connection's liveness (redis_io.Subscriber) -------------------------------


def _subscriber(url: str, got: list[bytes], ping: float) -> Subscriber:
    sub = Subscriber(connection_kwargs(url), lambda channel, data: got.append(data), ping_interval=ping)
    sub.add(b"live:ch")
    sub.start()
    wait_in_hub(lambda: sub.is_subscribed(b"live:ch"), what="subscribed")
    return sub


def test_subscriber_keeps_its_connection_through_a_busy_event_loop(redis_server: RedisServer) -> None:
    """The hub blocked for longer than the dead-peer bound (a worker busy writing to
    thousands of sockets on a loaded box) while Redis is alive: no PING could be sent, so
    none is unanswered; no reconnect, and publications sent during and after arrive (a
    reconnect would have lost those sent while it was down)."""
    got: list[bytes] = []
    sub = _subscriber(redis_server.url, got, ping=0.1)
    try:
        time.sleep(0.5)  # block the whole hub (no gevent.sleep) for 5 ping intervals: nothing arrives
        gevent.sleep(0.05)
        time.sleep(0.5)  # and again, a publication arriving meanwhile
        redis_server.command("PUBLISH", "live:ch", "while-busy")
        time.sleep(0.1)
        wait_in_hub(lambda: got == [b"while-busy"], what="the message published while the hub was busy")
        gevent.sleep(0.5)  # a few more ping rounds, all answered
        redis_server.command("PUBLISH", "live:ch", "after")
        wait_in_hub(lambda: got == [b"while-busy", b"after"], what="the message published after")
        assert sub.reconnects == 0 and sub.connected.is_set()
    finally:
        sub.close()


def test_subscriber_detects_a_frozen_redis_and_reconnects(private_redis: RedisServer) -> None:
    """Redis stopped (SIGSTOP, so the TCP connection stays up): the missing PONGs reveal
    it within a few ping intervals; once it runs again the subscriber is back."""
    got: list[bytes] = []
    sub = _subscriber(private_redis.url, got, ping=0.1)
    assert private_redis.proc is not None
    try:
        private_redis.proc.send_signal(signal.SIGSTOP)
        try:
            wait_in_hub(lambda: not sub.connected.is_set(), timeout=3.0, what="the dead peer noticed")
        finally:
            private_redis.proc.send_signal(signal.SIGCONT)
        wait_in_hub(lambda: sub.is_subscribed(b"live:ch"), timeout=5.0, what="resubscribed")
        assert sub.reconnects >= 1
        private_redis.command("PUBLISH", "live:ch", "after")
        wait_in_hub(lambda: b"after" in got, what="delivery after the reconnect")
    finally:
        sub.close()


# -- the command connections (redis_io.Client) ---------------------------------------------


def test_client_tries_a_timed_out_connect_once_more(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connect that timed out (measured: a hub busy writing to 60,000 sockets past the
    1 s timeout, with Redis there all along) is tried once more before the command is
    refused: nothing was sent yet.  A second timeout is reported as Redis unreachable."""
    import redis

    failures = {"left": 1}
    real = redis_io.make_connection

    def flaky(*args: Any, **kwargs: Any) -> Any:
        conn = real(*args, **kwargs)
        connect = conn.connect

        def first_times_out() -> None:
            if failures["left"] > 0:
                failures["left"] -= 1
                raise redis.exceptions.TimeoutError("Timeout connecting to server")
            connect()

        conn.connect = first_times_out
        return conn

    monkeypatch.setattr(redis_io, "make_connection", flaky)
    client = Client(connection_kwargs(redis_server.url), timeout=1.0, connect_timeout=1.0)
    assert client.execute("PING") in (b"PONG", "PONG", True)
    client._idle.clear()
    failures["left"] = 2
    with pytest.raises(redis_io.RedisDown, match="Timeout connecting"):
        client.execute("PING")


def test_client_reads_a_reply_that_waited_past_the_read_timeout(redis_server: RedisServer) -> None:
    """A reply read after its timeout fired while it was already in the socket (measured:
    a hub busy writing to 100,000 sockets; PUBLISHes answered "unreachable" that Redis had
    run) is read, not reported as Redis unreachable; a second timeout is."""
    import redis

    client = Client(connection_kwargs(redis_server.url), timeout=1.0, connect_timeout=1.0)
    assert client.execute("PING") in (b"PONG", "PONG", True)
    (conn,) = client._idle  # connected: the next commands run on it
    read = conn.read_response
    timeouts = {"left": 1}

    def times_out_first(*a: Any, **kw: Any) -> Any:
        if timeouts["left"] > 0:
            timeouts["left"] -= 1
            gevent.sleep(0.05)  # the reply arrives in the socket meanwhile, unread
            raise redis.exceptions.TimeoutError("Timeout reading from socket")
        return read(*a, **kw)

    conn.read_response = times_out_first
    assert client.execute("ECHO", "ran") == b"ran"
    timeouts["left"] = 2
    with pytest.raises(redis_io.RedisDown, match="Timeout reading"):
        client.execute("ECHO", "again")
    assert client._idle == []  # the connection with a reply unread is not kept
    assert client.execute("ECHO", "after") == b"after"
