"""``GET /metrics`` and ``GET /health`` end to end (issue 12, acceptance 2).

A scripted workload against a real server process, then ``/metrics`` scraped over HTTP
and parsed with prometheus-client's own parser: every counter must have moved by
exactly what the workload did.  The same with ``--workers 2`` on a real redis-server
(totals over both workers); ``/health`` with its worker count and 503 with Redis down.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from rocketws.brokers.memory import MemoryBroker
from rocketws.core.hub import Hub
from rocketws.core.node import Node
from rocketws.process.metrics import NodeCollector

from .proxy_app import ProxyApp
from .redis_fixtures import RedisServer
from .support import ServerProcess, wait_until
from .wsraw import CLOSE, TEXT, RawWebSocket, client_frame, close_payload, rpc_frame

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(srv: ServerProcess, **headers: str) -> Samples:
    """Every sample of ``/metrics``, parsed by prometheus-client."""
    resp = requests.get(srv.ms_url + "metrics", headers=headers, timeout=10)
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples: Samples = {}
    for family in text_string_to_metric_families(resp.text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name`` over samples carrying ``labels`` (any other label summed over)."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def _server_frame_size(payload: bytes) -> int:
    n = len(payload)
    return n + (2 if n < 126 else 4 if n <= 0xFFFF else 10)


class Counted:
    """A raw WebSocket client that counts the bytes it sent and the server's frame bytes."""

    def __init__(self, port: int) -> None:
        self.ws = RawWebSocket(port)
        self.sent = 0
        self.received = 0
        self.messages = 0  # text messages sent

    def send(self, frame: bytes, text: bool = True) -> None:
        self.ws.sock.sendall(frame)
        self.sent += len(frame)
        self.messages += text

    def read(self) -> tuple[int, bytes]:
        opcode, payload = self.ws.read_frame()
        self.received += _server_frame_size(payload)
        return opcode, payload

    def call(self, method: str, rid: int, params: object = None) -> Any:
        self.send(rpc_frame(method, rid, params))
        opcode, payload = self.read()
        assert opcode == TEXT
        return json.loads(payload)

    def push(self) -> Any:
        opcode, payload = self.read()
        assert opcode == TEXT
        return json.loads(payload)


def _post(srv: ServerProcess, body: Any) -> requests.Response:
    return srv.post(body)


def _emit(channel: str, data: Any, rid: int | None = 1) -> dict[str, Any]:
    req: dict[str, Any] = {"jsonrpc": "2.0", "method": "emit", "params": [channel, data]}
    if rid is not None:
        req["id"] = rid
    return req


COUNTERS = (
    "rocketws_messages_received_total",
    "rocketws_messages_sent_total",
    "rocketws_received_bytes_total",
    "rocketws_sent_bytes_total",
    "rocketws_deliveries_total",
)


def test_metrics_counters_move_by_exactly_the_workload(start_server: Any) -> None:
    srv: ServerProcess = start_server(ROCKETWS_PING_INTERVAL="0")  # no ping in the byte counts
    before = scrape(srv)
    a, b, c = (Counted(srv.ws_port) for _ in range(3))
    for i, ws in enumerate((a, b, c)):
        assert ws.call("subscribe", i, ["room"])["result"]["subscribed"] is True
    assert a.call("send_data", 10, ["room", "hi"])["result"]["delivered"] == 2
    for ws in (b, c):
        assert ws.push()["params"]["data"] == "hi"
    for rid in (1, 2):
        assert _post(srv, _emit("room", rid, rid)).json()["result"]["delivered"] == 3
    notify = {"jsonrpc": "2.0", "method": "notify_all", "params": ["all"], "id": 3}
    assert _post(srv, notify).json()["result"]["delivered"] == 3
    for ws in (a, b, c):
        assert [ws.push()["params"]["data"] for _ in range(3)] == [1, 2, "all"]
    batch = [_emit("nobody", n, 10 + n) for n in range(3)]
    assert [r["result"]["delivered"] for r in _post(srv, batch).json()] == [0, 0, 0]
    assert _post(srv, b"{").json()["error"]["code"] == -32700
    assert _post(srv, {"jsonrpc": "2.0", "method": "nope", "id": 4}).json()["error"]["code"] == -32601
    assert a.call("nope", 20)["error"]["code"] == -32601
    assert b.call("subscribe", 21, [""])["error"]["code"] == -32602
    # a clean close (1000 echoed) and a connection that just ends (1006)
    a.send(client_frame(CLOSE, close_payload(1000)), text=False)
    while a.read()[0] != CLOSE:
        pass
    a.ws.close()
    b.ws.close()
    d = Counted(srv.ws_port)  # a close code of the client's own choosing: counted as "other"
    d.send(client_frame(CLOSE, close_payload(3999)), text=False)
    while d.read()[0] != CLOSE:
        pass
    d.ws.close()
    wait_until(
        lambda: (
            total(scrape(srv), "rocketws_disconnects_total") - total(before, "rocketws_disconnects_total")
            == 3
        )
    )
    after = scrape(srv)

    def delta(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    sent_by_clients = a.sent + b.sent + c.sent + d.sent
    received_by_clients = a.received + b.received + c.received + d.received
    pushes = 2 + 3 * 3  # send_data to b and c; 2 emits and a notify_all to all three
    responses = a.messages + b.messages + c.messages  # every text message was a request
    assert {name: delta(name) for name in COUNTERS} == {
        "rocketws_messages_received_total": responses,
        "rocketws_messages_sent_total": pushes + responses,
        "rocketws_received_bytes_total": sent_by_clients,
        "rocketws_sent_bytes_total": received_by_clients,
        "rocketws_deliveries_total": pushes,
    }
    assert delta("rocketws_publications_total", source="http") == 2 + 1 + 3
    assert delta("rocketws_publications_total", source="send_data") == 1
    assert delta("rocketws_publications_total", source="redis") == 0
    assert delta("rocketws_disconnects_total", code="1000") == 1
    assert delta("rocketws_disconnects_total", code="1006") == 1
    assert delta("rocketws_disconnects_total", code="other") == 1
    assert delta("rocketws_slow_consumer_closes_total") == 0
    calls = {
        ("websocket", "subscribe"): 4,
        ("websocket", "send_data"): 1,
        ("http", "emit"): 5,
        ("http", "notify_all"): 1,
    }
    for (endpoint, method), n in calls.items():
        assert delta("rocketws_rpc_calls_total", endpoint=endpoint, method=method) == n, (endpoint, method)
    assert delta("rocketws_rpc_calls_total") == sum(calls.values())
    errors = {
        ("http", "parse", "-32700"): 1,
        ("http", "unknown", "-32601"): 1,
        ("websocket", "unknown", "-32601"): 1,
        ("websocket", "subscribe", "-32602"): 1,
    }
    for (endpoint, method, code), n in errors.items():
        assert delta("rocketws_rpc_errors_total", endpoint=endpoint, method=method, code=code) == n
    assert delta("rocketws_rpc_errors_total") == sum(errors.values())
    # single-call documents are timed per method, the batch as a whole
    timed = {("websocket", "subscribe"): 4, ("websocket", "send_data"): 1, ("http", "emit"): 2}
    for (endpoint, method), n in timed.items():
        count = delta("rocketws_rpc_duration_seconds_count", endpoint=endpoint, method=method)
        inf = delta("rocketws_rpc_duration_seconds_bucket", endpoint=endpoint, method=method, le="+Inf")
        assert count == inf == n
        assert delta("rocketws_rpc_duration_seconds_sum", endpoint=endpoint, method=method) > 0
    assert delta("rocketws_rpc_batch_duration_seconds_count", endpoint="http") == 1
    assert total(after, "rocketws_connections") == 1
    assert total(after, "rocketws_subscriptions") == 1
    assert total(after, "rocketws_channels") == 1
    assert total(after, "rocketws_broker_up") == 1
    assert total(after, "rocketws_build_info") == 1
    assert total(after, "rocketws_process_resident_memory_bytes") > 0
    c.ws.close()


def test_every_family_is_in_the_operations_metrics_table() -> None:
    table = (Path(__file__).parent.parent / "docs" / "operations.md").read_text()
    node = Node(Hub(), MemoryBroker())
    node.stats.proxy.observe("rpc", "app.*", 0.01, None)  # families with samples as well
    names = [f.name + ("_total" if f.type == "counter" else "") for f in NodeCollector(node).collect()]
    assert "rocketws_proxy_calls_total" in names
    missing = [name for name in names if f"| `{name}` |" not in table]
    assert missing == []


@pytest.fixture
def proxy_app() -> Iterator[ProxyApp]:
    application = ProxyApp()
    yield application
    application.close()


def test_metrics_count_proxied_calls_errors_timeouts_and_calls_served_apart(
    start_server: Any, proxy_app: ProxyApp
) -> None:
    routes = [
        {"pattern": "time.now", "handler": "tests.proxy_app:now"},
        {"pattern": "app.*", "url": proxy_app.url},
    ]
    srv: ServerProcess = start_server(
        ROCKETWS_PING_INTERVAL="0",  # no ping in the message counts
        ROCKETWS_RPC_PROXY_ROUTES=json.dumps(routes),
        ROCKETWS_SUBSCRIBE_PROXY_URL=proxy_app.url,
        ROCKETWS_PUBLISH_PROXY_URL=proxy_app.url,
        ROCKETWS_NAMESPACES=json.dumps([{"name": "guarded", "subscribe_proxy": True, "publish_proxy": True}]),
        ROCKETWS_PROXY_TIMEOUT="1",
        ROCKETWS_PROXY_MAX_IN_FLIGHT_PER_CONNECTION="1",
    )
    before = scrape(srv)
    ws = Counted(srv.ws_port)
    for rid in (1, 2):
        assert ws.call("rpc", rid, {"method": "app.echo", "params": [rid]})["result"] == {"echo": [rid]}
    assert ws.call("rpc", 3, {"method": "time.now"})["result"]["method"] == "time.now"
    assert ws.call("rpc", 4, {"method": "app.fail"})["error"]["code"] == 1001
    assert ws.call("subscribe", 5, ["guarded:room"])["result"]["subscribed"] is True
    assert ws.call("send_data", 9, ["guarded:room", "deny"])["error"]["code"] == 451
    # A call that times out, and one refused meanwhile (1 call at a time per connection).
    ws.send(rpc_frame("rpc", 6, {"method": "app.slow"}))
    wait_until(lambda: proxy_app.held() == 1, what="the slow call held by the application")
    ws.send(rpc_frame("rpc", 7, {"method": "app.echo"}))
    answers = {reply["id"]: reply for reply in (ws.push(), ws.push())}
    proxy_app.release()
    assert answers[7]["error"]["code"] == -32044 and answers[6]["error"]["code"] == -32042
    assert ws.call("rpc", 8, {"method": "nothing.routes.this"})["error"]["code"] == -32040
    after = scrape(srv)

    def delta(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    proxied = {
        ("rpc", "app.*"): 4,
        ("rpc", "time.now"): 1,
        ("subscribe", "subscribe"): 1,
        ("publish", "publish"): 1,
    }
    for (kind, pattern), n in proxied.items():
        assert delta("rocketws_proxy_calls_total", kind=kind, pattern=pattern) == n, (kind, pattern)
    assert delta("rocketws_proxy_calls_total") == sum(proxied.values())
    failed = {("rpc", "app.*", "1001"): 1, ("rpc", "app.*", "-32042"): 1, ("publish", "publish", "451"): 1}
    for (kind, pattern, code), n in failed.items():
        assert delta("rocketws_proxy_errors_total", kind=kind, pattern=pattern, code=code) == n, code
    assert delta("rocketws_proxy_errors_total") == sum(failed.values())
    for kind, n in (("rpc", 5), ("subscribe", 1), ("publish", 1)):
        count = delta("rocketws_proxy_call_duration_seconds_count", kind=kind)
        inf = delta("rocketws_proxy_call_duration_seconds_bucket", kind=kind, le="+Inf")
        assert count == inf == n, kind
    # the timed-out call waited the whole PROXY["TIMEOUT"] second
    assert delta("rocketws_proxy_call_duration_seconds_bucket", kind="rpc", le="0.5") <= 4
    assert delta("rocketws_proxy_call_duration_seconds_sum", kind="rpc") >= 1.0
    # Calls served apart (rpc) are counted, timed and answered like the others.
    assert delta("rocketws_rpc_calls_total", endpoint="websocket", method="rpc") == 7
    rpc_errors = {"1001": 1, "-32042": 1, "-32044": 1, "-32040": 1}
    for code, n in rpc_errors.items():
        assert delta("rocketws_rpc_errors_total", endpoint="websocket", method="rpc", code=code) == n, code
    assert delta("rocketws_rpc_duration_seconds_count", endpoint="websocket", method="rpc") == 6
    assert delta("rocketws_messages_received_total") == ws.messages == 9
    assert delta("rocketws_messages_sent_total") == 9  # one answer each, no publication
    ws.ws.close()


def test_metrics_slow_consumer_close_is_counted(start_server: Any) -> None:
    srv: ServerProcess = start_server(ROCKETWS_MAX_OUTBOX_BYTES="20000", ROCKETWS_SEND_BUFFER="4096")
    slow = RawWebSocket(srv.ws_port, rcvbuf=4096)
    assert slow.call("subscribe", 1, ["slow"])["result"]["subscribed"] is True
    payload = "x" * 8000
    closed = 0.0
    for _ in range(200):  # a bound: the outbox limit is 20 kB, the socket buffers hold little
        srv.post(_emit("slow", payload, None))
        closed = total(scrape(srv), "rocketws_slow_consumer_closes_total", reason="outbox")
        if closed:
            break
    wait_until(lambda: total(scrape(srv), "rocketws_disconnects_total", code="4008") == 1)
    samples = scrape(srv)
    assert total(samples, "rocketws_slow_consumer_closes_total", reason="outbox") == 1
    assert total(samples, "rocketws_slow_consumer_closes_total", reason="write_timeout") == 0
    slow.close()


def test_metrics_need_the_api_key_unless_public(start_server: Any) -> None:
    key = "k" * 40
    srv: ServerProcess = start_server(ROCKETWS_API_KEY=key)
    assert requests.get(srv.ms_url + "metrics", timeout=10).status_code == 401
    assert (
        requests.get(srv.ms_url + "metrics", headers={"X-API-Key": "w" * 40}, timeout=10).status_code == 401
    )
    assert scrape(srv, Authorization=f"apikey {key}")  # what Prometheus' authorization block sends
    assert requests.get(srv.ms_url + "health", timeout=10).status_code == 200
    public: ServerProcess = start_server(ROCKETWS_API_KEY=key, ROCKETWS_METRICS_PUBLIC="1")
    assert scrape(public)
    assert requests.post(public.ms_url + "metrics", timeout=10).status_code == 405


def test_metrics_off_answers_404_and_counts_no_calls(start_server: Any) -> None:
    srv: ServerProcess = start_server(ROCKETWS_METRICS="0")
    assert requests.get(srv.ms_url + "metrics", timeout=10).status_code == 404
    assert srv.result("ping") == "pong"
    assert srv.health()["status"] == "ok"


# -- --workers 2 on Redis --------------------------------------------------------------


@pytest.fixture
def two_workers(private_redis: RedisServer) -> Iterator[ServerProcess]:
    prefix = f"m-{uuid.uuid4().hex[:8]}:"
    srv = ServerProcess(
        env={
            "ROCKETWS_REDIS": f"{private_redis.url}?channel={prefix}source",
            "ROCKETWS_RPC_PROXY_ROUTES": json.dumps(
                [{"pattern": "time.*", "handler": "tests.proxy_app:now"}]
            ),
        },
        args=[
            "--ws-conn=127.0.0.1:0",
            "--ms-conn=127.0.0.1:0",
            "--workers=2",
            f"--broker={private_redis.url}?prefix={prefix}&presence_ttl=1&timeout=0.5",
        ],
    ).start()
    srv.source_channel = f"{prefix}source"  # type: ignore[attr-defined]
    try:
        srv.wait_log(r"all 2 workers ready", timeout=30)
        yield srv
    finally:
        srv.stop()
    srv.assert_no_traceback()


def _workers_of(samples: Samples) -> set[str]:
    return {dict(labels)["worker"] for (name, labels) in samples if name == "rocketws_build_info"}


def test_workers_metrics_cover_both_workers(two_workers: ServerProcess, private_redis: RedisServer) -> None:
    srv = two_workers
    wait_until(lambda: _workers_of(scrape(srv)) == {"1", "2"}, timeout=20)
    # Connect until both workers hold subscribers (the kernel spreads connections).
    clients: list[RawWebSocket] = []
    per_worker: dict[str, float] = {}
    for i in range(40):
        ws = RawWebSocket(srv.ws_port)
        assert ws.call("subscribe", i, ["fan"])["result"]["subscribed"] is True
        clients.append(ws)
        samples = scrape(srv)
        per_worker = {w: total(samples, "rocketws_connections", worker=w) for w in ("1", "2")}
        if len(clients) >= 4 and all(per_worker.values()):
            break
    assert all(per_worker.values()), per_worker
    n = len(clients)
    before = scrape(srv)
    emits = 5
    for rid in range(emits):  # each lands on one worker; Redis carries it to both
        assert srv.post(_emit("fan", rid, rid)).status_code == 200
    private_redis.command("PUBLISH", srv.source_channel, json.dumps(_emit("fan", "via-redis", None)))  # type: ignore[attr-defined]
    for ws in clients:
        got = [json.loads(ws.read_frame()[1])["params"]["data"] for _ in range(emits + 1)]
        assert sorted(map(str, got)) == sorted([*map(str, range(emits)), "via-redis"])
    after = scrape(srv)

    def delta(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert total(after, "rocketws_connections") == n
    assert delta("rocketws_publications_total", source="http") == emits
    # the Redis source runs in every worker: each delivers to its own subscribers
    assert delta("rocketws_publications_total", source="redis") == 2
    assert delta("rocketws_rpc_calls_total", endpoint="redis", method="emit") == 2
    assert delta("rocketws_deliveries_total") == n * (emits + 1)
    assert delta("rocketws_rpc_calls_total", method="emit", endpoint="http") == emits
    assert delta("rocketws_broker_publish_duration_seconds_count") == emits
    assert total(after, "rocketws_broker_up") == 2
    # proxied calls: each worker counts its own connections' calls, the scrape shows both
    for i, ws in enumerate(clients):
        assert ws.call("rpc", 100 + i, {"method": "time.now"})["result"]["method"] == "time.now"
    proxied = scrape(srv)
    for worker in ("1", "2"):
        calls = total(proxied, "rocketws_proxy_calls_total", worker=worker, kind="rpc", pattern="time.*")
        assert calls - total(after, "rocketws_proxy_calls_total", worker=worker) == per_worker[worker]
    assert total(proxied, "rocketws_proxy_call_duration_seconds_count", kind="rpc") == n
    health = srv.health()
    assert health["status"] == "ok" and health["workers"]["up"] == health["workers"]["expected"] == 2
    assert health["connections"] == n
    assert sorted(w["worker"] for w in health["workers"]["list"]) == ["1", "2"]
    for ws in clients:
        ws.close()


def test_workers_health_fails_with_redis_down(two_workers: ServerProcess, private_redis: RedisServer) -> None:
    srv = two_workers
    wait_until(lambda: srv.health()["workers"]["up"] == 2, timeout=20)
    private_redis.stop()

    def unhealthy() -> dict[str, Any] | None:
        resp = requests.get(srv.ms_url + "health", timeout=10)
        return resp.json() if resp.status_code == 503 else None

    body = wait_until(unhealthy, timeout=20)
    assert body is not None and body["status"] == "broker unreachable"
    assert body["broker"]["connected"] is False and body["workers"]["up"] == 2
    samples = scrape(srv)
    assert total(samples, "rocketws_broker_up") == 0
    refused = srv.post(_emit("any", 1)).json()  # whichever worker gets it cannot publish
    assert refused["error"]["code"] == -32002
    after = scrape(srv)
    assert (
        total(after, "rocketws_broker_publish_errors_total")
        - total(samples, "rocketws_broker_publish_errors_total")
        == 1
    )
    errors = {"endpoint": "http", "method": "emit", "code": "-32002"}
    assert (
        total(after, "rocketws_rpc_errors_total", **errors)
        - total(samples, "rocketws_rpc_errors_total", **errors)
        == 1
    )
    private_redis.start()
    wait_until(lambda: requests.get(srv.ms_url + "health", timeout=10).status_code == 200, timeout=30)
    assert total(scrape(srv), "rocketws_broker_reconnects_total") == 2  # one per worker, one outage
