"""RedisBroker beyond the shared contract: several nodes, presence, outages, bounds.

Two brokers in this process share one private redis-server, each with a FakeNode, so
cross-node behaviour is tested without server processes (those are in test_redis_e2e).
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import gevent
import gevent.server
import pytest

from rocketws.brokers import Publication, create_broker
from rocketws.brokers.base import Emit, Stream
from rocketws.brokers.redis import RedisBroker
from rocketws.brokers.redis_io import make_connection, pack_commands
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
