"""End to end: the WebSocket endpoint of a real `manage.py runserver` over real sockets."""

from __future__ import annotations

import json
import socket
import struct
import time

import pytest
import requests
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection

from .support import ServerProcess, StartServer, recv_json, request, subscribe, wait_until, ws_connect
from .wsraw import PING, PONG, RawWebSocket, client_frame, close_payload

# -- client methods -----------------------------------------------------------------


def test_client_subscribe_is_idempotent_and_listed(server: ServerProcess) -> None:
    with ws_connect(server.ws_url) as ws:
        subscribe(ws, "chat")
        subscribe(ws, "chat")
        assert request(ws, "subscribe", ["news"])["result"] == {"channel": "news", "subscribed": True}
        assert request(ws, "subscriptions")["result"] == ["chat", "news"]
        assert server.result("total_subscribers", {"channel": "chat"}) == 1


def test_client_unsubscribe_is_idempotent(server: ServerProcess) -> None:
    with ws_connect(server.ws_url) as ws:
        subscribe(ws, "u1")
        for _ in range(2):
            resp = request(ws, "unsubscribe", {"channel": "u1"})
            assert resp["result"] == {"channel": "u1", "subscribed": False}
        assert request(ws, "subscriptions")["result"] == []
        assert "u1" not in server.result("available_channels")


def test_client_ping_and_heartbeat(server: ServerProcess) -> None:
    with ws_connect(server.ws_url) as ws:
        assert request(ws, "ping", rid="p")["result"] == "pong"
        assert request(ws, "heartbeat", rid=7)["result"] == {"heartbeat": "ok"}


def test_client_send_data_reaches_others_not_sender(server: ServerProcess) -> None:
    with ws_connect(server.ws_url) as a, ws_connect(server.ws_url) as b, ws_connect(server.ws_url) as c:
        for ws in (a, b, c):
            subscribe(ws, "room")
        before = time.time()
        resp = request(a, "send_data", {"channel": "room", "data": {"text": "hi"}})
        assert resp["result"] == {"channel": "room", "delivered": 2}
        for ws in (b, c):
            push = recv_json(ws)
            assert push["method"] == "message"
            assert push["params"]["channel"] == "room"
            assert push["params"]["data"] == {"text": "hi"}
            assert isinstance(push["params"]["ts"], float)
            assert before <= push["params"]["ts"] <= time.time()
            assert "id" not in push
        # the sender got nothing but its reply: its next frame is the reply to ping
        assert request(a, "ping", rid=99) == {"jsonrpc": "2.0", "result": "pong", "id": 99}


def test_client_send_data_unsubscribed_is_32001(server: ServerProcess) -> None:
    with ws_connect(server.ws_url) as ws:
        resp = request(ws, "send_data", {"channel": "nope", "data": 1})
        assert resp["error"]["code"] == -32001
        assert resp["error"]["data"]["channel"] == "nope"


def test_client_backend_method_is_32601(server: ServerProcess) -> None:
    with ws_connect(server.ws_url) as ws:
        for method in ("emit", "notify_all", "available_channels", "total_subscribers"):
            resp = request(ws, method, {"channel": "x", "data": 1}, rid=method)
            assert resp["error"]["code"] == -32601, resp
            assert resp["id"] == method


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({}, "missing"),
        ({"channel": "a", "extra": 1}, "unexpected"),
        ({"channel": 5}, "string"),
        ({"channel": ""}, "empty"),
        ({"channel": "x" * 256}, "longer than 255"),
        ({"channel": "a\nb"}, "control"),
        (["a", "b"], "too many"),
    ],
)
def test_client_subscribe_bad_params_is_32602(server: ServerProcess, params: object, reason: str) -> None:
    with ws_connect(server.ws_url) as ws:
        resp = request(ws, "subscribe", params)
        assert resp["error"]["code"] == -32602
        assert reason in json.dumps(resp["error"]["data"])
        assert request(ws, "ping")["result"] == "pong"  # the connection stays usable


def test_client_channel_limit_is_32003(start_server: StartServer) -> None:
    srv = start_server(ROCKETWS_MAX_CHANNELS_PER_CONNECTION="3")
    with ws_connect(srv.ws_url) as ws:
        for i in range(3):
            subscribe(ws, f"c{i}")
        subscribe(ws, "c0")  # already subscribed: still fine
        resp = request(ws, "subscribe", {"channel": "c3"})
        assert resp["error"]["code"] == -32003
        assert resp["error"]["data"]["max"] == 3


# -- JSON-RPC rules on the WebSocket ------------------------------------------------


def test_client_json_mistakes_never_close(server: ServerProcess) -> None:
    with ws_connect(server.ws_url) as ws:
        ws.send("{not json")
        resp = recv_json(ws)
        assert (resp["error"]["code"], resp["id"]) == (-32700, None)
        for bad in ("123", '"x"', "null", '{"jsonrpc":"1.0","method":"ping","id":1}'):
            ws.send(bad)
            assert recv_json(ws)["error"]["code"] == -32600
        ws.send("[]")
        resp = recv_json(ws)
        assert resp["error"]["code"] == -32600 and resp["id"] is None
        assert request(ws, "ping")["result"] == "pong"


def test_client_parse_error_has_null_id(server: ServerProcess) -> None:
    with ws_connect(server.ws_url) as ws:
        ws.send('{"jsonrpc": "2.0", "method": "ping", "id": 1')
        resp = recv_json(ws)
        assert resp["error"]["code"] == -32700
        assert resp["id"] is None


def test_client_batch_and_notifications(server: ServerProcess) -> None:
    with ws_connect(server.ws_url) as ws:
        ws.send(
            json.dumps(
                [
                    {"jsonrpc": "2.0", "method": "subscribe", "params": {"channel": "b1"}, "id": "s"},
                    {"jsonrpc": "2.0", "method": "ping"},
                    {"jsonrpc": "2.0", "method": "nope", "id": 2},
                    1,
                ]
            )
        )
        resp = recv_json(ws)
        assert [r.get("id") for r in resp] == ["s", 2, None]
        assert resp[0]["result"]["subscribed"] is True
        assert resp[1]["error"]["code"] == -32601
        assert resp[2]["error"]["code"] == -32600
        # a notification (and a batch of them) gets no reply at all
        ws.send(json.dumps({"jsonrpc": "2.0", "method": "subscribe", "params": {"channel": "b2"}}))
        ws.send(json.dumps([{"jsonrpc": "2.0", "method": "ping"}, {"jsonrpc": "2.0", "method": "x"}]))
        assert request(ws, "subscriptions", rid=3) == {"jsonrpc": "2.0", "result": ["b1", "b2"], "id": 3}


@pytest.mark.parametrize("rid", ["abc", 0, -5, 1.5, None, 123456789012345678901234567890, "ü"])
def test_client_ids_are_echoed_exactly(server: ServerProcess, rid: object) -> None:
    with ws_connect(server.ws_url) as ws:
        ws.send(json.dumps({"jsonrpc": "2.0", "method": "ping", "id": rid}))
        raw = ws.recv(timeout=10)
        assert json.loads(raw)["id"] == rid
        assert f'"id":{json.dumps(rid, ensure_ascii=False)}' in raw


# -- frames, limits and close codes ---------------------------------------------------


def _closed_with(ws: ClientConnection, code: int) -> str:
    with pytest.raises(ConnectionClosed) as info:
        ws.recv(timeout=10)
    assert info.value.rcvd is not None, "no close frame received"
    assert info.value.rcvd.code == code
    return info.value.rcvd.reason


def test_client_binary_frame_closes_1003(server: ServerProcess) -> None:
    with ws_connect(server.ws_url) as ws:
        ws.send(b'{"jsonrpc":"2.0","method":"ping","id":1}')
        assert "binary" in _closed_with(ws, 1003)


def test_client_invalid_utf8_closes_1007(server: ServerProcess) -> None:
    with ws_connect(server.ws_url) as ws:
        ws.send(b'{"x": "\xff\xfe"}', text=True)
        assert "UTF-8" in _closed_with(ws, 1007)


def test_client_message_over_limit_closes_1009(server: ServerProcess) -> None:
    with ws_connect(server.ws_url, max_size=None) as ws:
        ws.send(json.dumps({"jsonrpc": "2.0", "method": "ping", "id": 1, "pad": "x" * 65536}))
        assert "65536" in _closed_with(ws, 1009)


def test_client_message_at_limit_is_served(server: ServerProcess) -> None:
    with ws_connect(server.ws_url) as ws:
        body = json.dumps({"jsonrpc": "2.0", "method": "ping", "id": 1, "pad": ""})
        body = body.replace('"pad": ""', '"pad": "' + "x" * (65536 - len(body)) + '"')
        assert len(body.encode()) == 65536
        ws.send(body)
        assert recv_json(ws)["error"]["code"] == -32600  # "pad" is not a request member


def test_client_huge_announced_frame_closes_1009_without_waiting(server: ServerProcess) -> None:
    raw = RawWebSocket(server.ws_port)
    raw.send_frame(0x1, b"", length=1 << 40)  # announce 1 TiB, send nothing
    texts, code, _reason = raw.read_until_close()
    assert code == 1009
    raw.close()


def test_client_fragmented_message_is_reassembled(server: ServerProcess) -> None:
    raw = RawWebSocket(server.ws_port)
    msg = json.dumps({"jsonrpc": "2.0", "method": "ping", "id": "frag"}).encode()
    raw.send_frame(0x1, msg[:10], fin=False)
    raw.send_frame(0x9, b"mid")  # a ping between fragments is answered
    raw.send_frame(0x0, msg[10:20], fin=False)
    raw.send_frame(0x0, msg[20:], fin=True)
    assert raw.read_frame() == (0xA, b"mid")
    opcode, payload = raw.read_frame()
    assert opcode == 0x1 and json.loads(payload) == {"jsonrpc": "2.0", "result": "pong", "id": "frag"}
    raw.close()


def test_client_fragments_over_limit_close_1009(server: ServerProcess) -> None:
    raw = RawWebSocket(server.ws_port)
    for _ in range(3):
        raw.send_frame(0x1 if _ == 0 else 0x0, b"x" * 30000, fin=False)
    assert raw.read_until_close()[1] == 1009
    raw.close()


def test_client_message_in_1024_fragments_is_served(server: ServerProcess) -> None:
    raw = RawWebSocket(server.ws_port)
    msg = json.dumps({"jsonrpc": "2.0", "method": "ping", "id": 1024}).encode()
    frames = [client_frame(0x1, msg, fin=False)] + [client_frame(0x0, b"", fin=False) for _ in range(1022)]
    raw.sock.sendall(b"".join(frames) + client_frame(0x0, b""))  # 1 + 1022 + 1 = 1,024 fragments
    assert raw.read_frame() == (0x1, b'{"jsonrpc":"2.0","result":"pong","id":1024}')
    raw.close()


def test_client_message_in_1025_fragments_closes_1009(server: ServerProcess) -> None:
    raw = RawWebSocket(server.ws_port)
    frames = [client_frame(0x1, b"[]", fin=False)] + [client_frame(0x0, b"", fin=False) for _ in range(1023)]
    raw.sock.sendall(b"".join(frames) + client_frame(0x0, b""))  # the 1,025th, final, is refused
    assert raw.read_until_close()[1:] == (1009, "message in more than 1024 fragments")
    raw.close()


def test_client_invalid_utf8_fragment_closes_1007_before_the_message_ends(server: ServerProcess) -> None:
    # RFC 6455 8.1: the first fragment that cannot be UTF-8 fails the connection; the
    # final fragment is never sent.
    raw = RawWebSocket(server.ws_port)
    raw.send_frame(0x1, b'{"jsonrpc": "2.0", "method": "ping", "x": "', fin=False)
    raw.send_frame(0x0, b"\xc3(", fin=False)
    assert raw.read_until_close()[1:] == (1007, "text message is not valid UTF-8")
    raw.close()


def test_client_unmasked_frame_closes_1002(server: ServerProcess) -> None:
    raw = RawWebSocket(server.ws_port)
    raw.send_frame(0x1, b'{"jsonrpc":"2.0","method":"ping","id":1}', mask=False)
    assert raw.read_until_close()[1] == 1002
    raw.close()


def test_client_close_is_echoed_with_its_code(server: ServerProcess) -> None:
    raw = RawWebSocket(server.ws_port)
    raw.send_frame(0x8, close_payload(4321, "bye"))
    assert raw.read_until_close()[1:] == (4321, "bye")
    with pytest.raises(EOFError):
        raw.read_frame()  # then the server closes the TCP connection
    raw.close()


def test_server_ping_frame_gets_pong(server: ServerProcess) -> None:
    with ws_connect(server.ws_url) as ws:
        assert ws.ping(b"hello").wait(10)


# -- disconnect cleanup, leaks, slow consumers ------------------------------------------


def _reset(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_client_abrupt_reset_removes_subscriptions(server: ServerProcess) -> None:
    raw = RawWebSocket(server.ws_port)
    raw.send_text(json.dumps({"jsonrpc": "2.0", "method": "subscribe", "params": ["reset-ch"], "id": 1}))
    raw.read_frame()
    raw.send_text(json.dumps({"jsonrpc": "2.0", "method": "subscribe", "params": ["reset-ch2"], "id": 2}))
    raw.read_frame()
    assert server.result("total_subscribers", {"channel": "reset-ch"}) == 1
    _reset(raw.sock)
    wait_until(lambda: server.result("total_subscribers", {"channel": "reset-ch"}) == 0)
    channels = server.result("available_channels")
    assert "reset-ch" not in channels and "reset-ch2" not in channels


def test_client_connect_cycles_leave_registry_empty(start_server: StartServer) -> None:
    srv = start_server()
    for i in range(1000):
        raw = RawWebSocket(srv.ws_port)
        raw.send_text(
            json.dumps(
                {"jsonrpc": "2.0", "method": "subscribe", "params": {"channel": f"leak{i % 7}"}, "id": i}
            )
        )
        assert raw.read_frame()[0] == 0x1
        if i % 3 == 0:
            _reset(raw.sock)  # abrupt TCP reset
        elif i % 3 == 1:
            raw.send_frame(0x8, close_payload(1000))  # clean close
            raw.read_until_close()
            raw.close()
        else:
            raw.close()  # plain FIN without a close frame
    wait_until(lambda: srv.health()["connections"] == 0, timeout=30)
    assert srv.result("available_channels") == []
    assert srv.result("total_subscribers") == 0
    health = srv.health()
    assert (health["status"], health["connections"], health["channels"]) == ("ok", 0, 0)
    assert health["broker"]["ready"] is True
    assert "Traceback" not in srv.log()


def test_slow_consumer_is_closed_4008_and_others_keep_receiving(start_server: StartServer) -> None:
    srv = start_server(ROCKETWS_MAX_OUTBOX_BYTES="65536", ROCKETWS_CLOSE_TIMEOUT="30")
    slow = RawWebSocket(srv.ws_port, rcvbuf=4096)
    slow.send_text(json.dumps({"jsonrpc": "2.0", "method": "subscribe", "params": ["flood"], "id": 1}))
    slow.read_frame()
    with ws_connect(srv.ws_url, max_queue=None) as fast:
        subscribe(fast, "flood")
        payload = "y" * 4000
        sent = 0
        http = requests.Session()
        # publish until the server gives up on the slow reader (bounded: 4,000 emits);
        # 5 x 4 KB per request stays under the 64 KiB limit for a reader that keeps up
        while srv.result("total_subscribers", {"channel": "flood"}) == 2:
            assert sent < 4000, "slow consumer was never disconnected"
            batch = [
                {
                    "jsonrpc": "2.0",
                    "method": "emit",
                    "params": {"channel": "flood", "data": [sent + k, payload]},
                    "id": k,
                }
                for k in range(5)
            ]
            assert http.post(srv.ms_url, data=json.dumps(batch), timeout=10).status_code == 200
            sent += 5
        for k in range(sent):  # the fast subscriber got every message, in order
            assert recv_json(fast)["params"]["data"][0] == k
        assert request(fast, "ping")["result"] == "pong"
    # the slow reader starts reading: what was queued before the limit, then 4008
    texts, code, reason = slow.read_until_close()
    assert (code, reason) == (4008, "slow consumer")
    assert 0 < len(texts) < sent
    slow.close()
    wait_until(lambda: srv.health()["connections"] == 0)


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        ([(0x1 | 0x40, b"{}")], 1002),  # RSV1 set without an extension
        ([(0x3, b"x")], 1002),  # reserved opcode
        ([(0x0, b"x")], 1002),  # continuation with no message started
        ([(0x8, b"\x03")], 1002),  # close payload of one byte
        ([(0x8, close_payload(1005))], 1002),  # a close code that must not be sent
    ],
)
def test_client_protocol_errors_close_1002(
    server: ServerProcess, frames: list[tuple[int, bytes]], code: int
) -> None:
    raw = RawWebSocket(server.ws_port)
    for opcode, payload in frames:
        raw.send_frame(opcode, payload)
    assert raw.read_until_close()[1] == code
    raw.close()


def test_client_endless_empty_fragments_close_1009(server: ServerProcess) -> None:
    raw = RawWebSocket(server.ws_port)
    raw.send_frame(0x1, b"{", fin=False)
    for _ in range(1100):  # empty fragments add no bytes, but each would cost memory
        raw.send_frame(0x0, b"", fin=False)
    texts, code, reason = raw.read_until_close()
    raw.close()
    assert (code, reason) == (1009, "message in more than 1024 fragments")


def test_client_over_max_connections_gets_503_and_others_are_served(start_server: StartServer) -> None:
    srv = start_server(ROCKETWS_MAX_CONNECTIONS="2")
    with ws_connect(srv.ws_url) as a, ws_connect(srv.ws_url) as b:
        with pytest.raises(InvalidStatus) as info:
            ws_connect(srv.ws_url)
        assert info.value.response.status_code == 503
        assert info.value.response.headers["Retry-After"] == "5"
        assert request(a, "ping")["result"] == "pong" and request(b, "ping")["result"] == "pong"
    wait_until(lambda: srv.health()["connections"] == 0)
    with ws_connect(srv.ws_url) as c:  # room again once they closed
        assert request(c, "ping")["result"] == "pong"


def test_client_from_a_disallowed_origin_gets_403(start_server: StartServer) -> None:
    srv = start_server(ROCKETWS_ALLOWED_ORIGINS="https://app.example.com, http://localhost:8000")
    with pytest.raises(InvalidStatus) as info:
        ws_connect(srv.ws_url, origin="https://evil.example.net")
    assert info.value.response.status_code == 403
    for origin in ("https://app.example.com", "http://LOCALHOST:8000", None):  # None: no header
        with ws_connect(srv.ws_url, origin=origin) as ws:
            assert request(ws, "ping")["result"] == "pong"


# -- channel namespaces -------------------------------------------------------------


def test_client_namespace_rules_refuse_with_32005(start_server: StartServer) -> None:
    srv = start_server(
        ROCKETWS_NAMESPACES='[{"name": "news", "allow_send_data": false}, {"name": "chat"}]',
        ROCKETWS_ALLOW_UNKNOWN_NAMESPACES="false",
    )
    with ws_connect(srv.ws_url) as ws, ws_connect(srv.ws_url) as peer:
        for conn in (ws, peer):
            subscribe(conn, "news:sport")
            subscribe(conn, "chat:room")
        refused = request(ws, "send_data", {"channel": "news:sport", "data": "hi"})
        assert refused["error"] == {
            "code": -32005,
            "message": "Not allowed",
            "data": {
                "channel": "news:sport",
                "namespace": "news",
                "reason": "send_data is disabled in namespace 'news'",
            },
        }
        unknown = request(ws, "subscribe", {"channel": "x:y"}, rid=2)
        assert unknown == {
            "jsonrpc": "2.0",
            "id": 2,
            "error": {
                "code": -32005,
                "message": "Not allowed",
                "data": {
                    "channel": "x:y",
                    "namespace": "x",
                    "reason": "unknown namespace 'x' (declared: 'chat', 'news')",
                },
            },
        }
        assert request(ws, "subscriptions")["result"] == ["chat:room", "news:sport"]
        subscribe(ws, "lobby")  # no colon: the default namespace always exists
        sent = request(ws, "send_data", {"channel": "chat:room", "data": "hello"})
        assert sent["result"] == {"channel": "chat:room", "delivered": 1}
        assert recv_json(peer)["params"]["data"] == "hello"  # nothing from the refused send came first
        assert srv.result("emit", {"channel": "news:sport", "data": "scores"})["delivered"] == 2
        push = recv_json(peer)["params"]  # backends may emit anywhere
        assert (push["channel"], push["data"]) == ("news:sport", "scores")
        assert recv_json(ws)["params"] == push


# -- liveness: server pings, the pong timeout, the write timeout ---------------------------

LIVE_ENV = {"ROCKETWS_PING_INTERVAL": "0.3", "ROCKETWS_PONG_TIMEOUT": "0.6"}


def test_quiet_client_is_pinged_then_closed_4009_without_a_pong(start_server: StartServer) -> None:
    srv = start_server(**LIVE_ENV)
    raw = RawWebSocket(srv.ws_port)
    assert raw.call("subscribe", 1, ["quiet"])["result"]["subscribed"] is True
    answered = time.monotonic()
    assert raw.read_frame() == (PING, b"")  # RFC 6455 5.5.2: a ping, no payload
    pinged = time.monotonic()
    assert pinged - answered >= 0.3 - 0.075 - 0.05  # the interval, less one sweep period
    texts, code, reason = raw.read_until_close()  # we never answer it
    closed = time.monotonic()
    assert (texts, code, reason) == ([], 4009, "no pong")
    assert 0.6 - 0.05 <= closed - pinged <= 0.6 + 1.0
    with pytest.raises(EOFError):
        raw.read_frame()
    raw.close()
    assert srv.result("total_subscribers", {"channel": "quiet"}) == 0
    assert "Traceback" not in srv.log()


def test_client_that_answers_pings_stays_open_across_many_intervals(start_server: StartServer) -> None:
    srv = start_server(**LIVE_ENV)
    raw = RawWebSocket(srv.ws_port)
    assert raw.call("subscribe", 1, ["awake"])["result"]["subscribed"] is True
    start = time.monotonic()
    for i in range(8):
        assert raw.read_frame() == (PING, b"")
        if i % 2:
            raw.send_frame(PONG, b"")
        else:  # any frame shows the client is there, not only a pong (5.5.3)
            assert raw.call("ping", 10 + i)["result"] == "pong"
    assert time.monotonic() - start > 0.3 + 0.6 + 0.3  # longer than a missed pong takes
    assert srv.result("total_subscribers", {"channel": "awake"}) == 1
    srv.call("emit", {"channel": "awake", "data": "still here"})
    while (frame := raw.read_frame())[0] == PING:
        raw.send_frame(PONG, b"")
    assert json.loads(frame[1])["params"]["data"] == "still here"
    raw.close()


def test_stalled_reader_on_a_quiet_channel_is_dropped_after_write_timeout(start_server: StartServer) -> None:
    # The outbox limit (64 MiB) is never reached: only the write timeout can end it.
    srv = start_server(
        ROCKETWS_WRITE_TIMEOUT="1",
        ROCKETWS_PING_INTERVAL="0",
        ROCKETWS_MAX_OUTBOX_BYTES=str(64 << 20),
    )
    stalled = RawWebSocket(srv.ws_port, rcvbuf=4096)
    assert stalled.call("subscribe", 1, ["stall"])["result"]["subscribed"] is True
    with ws_connect(srv.ws_url) as reader:  # a reader of another channel is not affected
        subscribe(reader, "other")
        # 8 MiB: more than the kernel holds (tcp_wmem max 4 MiB + the 4 KiB receive buffer)
        for i in range(16):
            srv.call("emit", {"channel": "stall", "data": [i, "z" * (512 * 1024 - 64)]})
        emitted = time.monotonic()
        wait_until(lambda: srv.result("total_subscribers", {"channel": "stall"}) == 0, timeout=10)
        assert time.monotonic() - emitted <= 1.0 + 1.0  # WRITE_TIMEOUT + margin
        srv.call("emit", {"channel": "other", "data": "fine"})
        assert recv_json(reader)["params"]["data"] == "fine"
    srv.wait_log(r"closing \w+: the socket took nothing")
    assert "slow consumer (" not in srv.log() and "Traceback" not in srv.log()
    assert srv.health()["connections"] == 0
    stalled.close()


def test_slow_consumer_close_does_not_wait_behind_the_backlog(start_server: StartServer) -> None:
    limit = 256 * 1024
    srv = start_server(
        ROCKETWS_MAX_OUTBOX_BYTES=str(limit),
        ROCKETWS_SEND_BUFFER="16384",  # the kernel holds ~32 KiB: what arrives is ours to bound
        ROCKETWS_CLOSE_TIMEOUT="30",
        ROCKETWS_WRITE_TIMEOUT="0",
        ROCKETWS_PING_INTERVAL="0",
    )
    slow = RawWebSocket(srv.ws_port, rcvbuf=4096)
    assert slow.call("subscribe", 1, ["flood2"])["result"]["subscribed"] is True
    http = requests.Session()
    sent = 0
    # 200 KB per request leave in one write: what the kernel refuses of it is the backlog
    # (~170 KB) when the next request takes the connection over its limit
    while srv.result("total_subscribers", {"channel": "flood2"}) == 1:
        assert sent < 200, "slow consumer was never disconnected"
        batch = [
            {
                "jsonrpc": "2.0",
                "method": "emit",
                "params": {"channel": "flood2", "data": "y" * 20000},
                "id": k,
            }
            for k in range(10)
        ]
        assert http.post(srv.ms_url, data=json.dumps(batch), timeout=10).status_code == 200
        sent += 10
    texts, code, reason = slow.read_until_close()
    assert (code, reason) == (4008, "slow consumer")
    # only what the kernel held and the rest of the frame in flight come before the close
    # frame, not the backlog
    assert 0 < sum(len(t) for t in texts) < limit // 2
    slow.close()
    wait_until(lambda: srv.health()["connections"] == 0)


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (client_frame(0x2, b"\x01\x02\x03"), 1003),  # a binary frame
        (client_frame(0x1, b"x" * 70_000), 1009),  # too big: its rest is still arriving
    ],
    ids=["binary-1003", "too-big-1009"],
)
def test_refusal_close_waits_for_the_peer_instead_of_resetting(
    server: ServerProcess, frame: bytes, code: int
) -> None:
    """The server closes after a violation: its close frame, then FIN, and it keeps reading
    (and dropping) until the peer's EOF; the peer's close frame, sent after the server's
    FIN, gets no reset (browsers report a reset as an unclean close)."""
    ws = RawWebSocket(server.ws_port)
    try:
        ws.sock.sendall(frame)
        got = b""
        while True:  # the server's close frame, then its EOF
            chunk = ws.sock.recv(65536)
            if not chunk:
                break
            got += chunk
        assert got[0] == 0x88 and struct.unpack("!H", got[2:4])[0] == code, got[:40]
        ws.sock.sendall(client_frame(0x8, close_payload(code)))  # our close reply, late
        ws.sock.shutdown(socket.SHUT_WR)
        assert ws.sock.recv(1) == b""  # EOF again, not ECONNRESET
    finally:
        ws.sock.close()
