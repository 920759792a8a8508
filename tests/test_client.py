"""rocketws.client against a real `manage.py runserver` (and two tiny local sockets)."""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests.adapters

from rocketws.client import (
    BadResponse,
    Client,
    RpcError,
    ServerRpcError,
    TransportError,
    normalize_url,
)
from rocketws.core.exceptions import RocketWSError

from .support import ServerProcess, StartServer, free_port, recv_json, subscribe, wait_until, ws_connect


@pytest.fixture
def client(server: ServerProcess) -> Iterator[Client]:
    with Client(server.ms_url, timeout=5) as c:
        yield c


# -- every method -------------------------------------------------------------------


def test_client_emit_pushes_to_subscriber(server: ServerProcess, client: Client) -> None:
    with ws_connect(server.ws_url) as ws:
        subscribe(ws, "client-emit")
        assert client.emit("client-emit", {"message": "hi"}) == {
            "channel": "client-emit",
            "delivered": 1,
        }
        push = recv_json(ws)
    assert push["method"] == "message"
    assert push["params"]["channel"] == "client-emit"
    assert push["params"]["data"] == {"message": "hi"}


def test_client_emit_to_empty_channel_delivers_zero(client: Client) -> None:
    assert client.emit("client-nobody", [1, 2]) == {"channel": "client-nobody", "delivered": 0}


def test_client_notify_all_reaches_unsubscribed_connection(server: ServerProcess, client: Client) -> None:
    with ws_connect(server.ws_url) as ws:
        result = client.notify_all({"maintenance": True})
        push = recv_json(ws)
    assert result["delivered"] >= 1
    assert push["method"] == "broadcast"
    assert push["params"]["data"] == {"maintenance": True}


def test_client_available_channels_lists_subscribed_channels(server: ServerProcess, client: Client) -> None:
    with ws_connect(server.ws_url) as ws:
        subscribe(ws, "client-b")
        subscribe(ws, "client-a")
        channels = client.available_channels()
        assert {"client-a", "client-b"} <= set(channels)
        assert channels == sorted(channels)
    wait_until(lambda: "client-a" not in client.available_channels())


def test_client_total_subscribers_counts_channel_and_connections(
    server: ServerProcess, client: Client
) -> None:
    with ws_connect(server.ws_url) as ws1, ws_connect(server.ws_url) as ws2:
        subscribe(ws1, "client-count")
        subscribe(ws2, "client-count")
        assert client.total_subscribers("client-count") == 2
        assert client.total_subscribers() >= 2
    wait_until(lambda: client.total_subscribers("client-count") == 0)


def test_client_ping_returns_pong(client: Client) -> None:
    assert client.ping() == "pong"


# -- batch ----------------------------------------------------------------------------


def test_client_batch_returns_results_in_order(server: ServerProcess, client: Client) -> None:
    with ws_connect(server.ws_url) as ws:
        subscribe(ws, "client-batch")
        with client.batch() as batch:
            first = batch.emit("client-batch", {"n": 1})
            second = batch.emit("client-batch", {"n": 2})
            bad = batch.emit("", {"n": 3})
            everyone = batch.notify_all("all")
        pushes = [recv_json(ws) for _ in range(3)]
    results = batch.results
    assert results is not None and len(results) == 4
    assert results[first] == {"channel": "client-batch", "delivered": 1}
    assert results[second] == {"channel": "client-batch", "delivered": 1}
    assert isinstance(results[bad], ServerRpcError) and results[bad].code == -32602
    assert results[everyone]["delivered"] >= 1
    assert [p["params"]["data"] for p in pushes] == [{"n": 1}, {"n": 2}, "all"]


def test_client_batch_send_builder_returns_results(client: Client) -> None:
    batch = client.batch()
    batch.emit("client-builder", 1)
    batch.call("ping")
    assert len(batch) == 2
    assert batch.send() == [{"channel": "client-builder", "delivered": 0}, "pong"]
    with pytest.raises(RuntimeError):
        batch.send()


def test_client_batch_empty_sends_nothing(client: Client) -> None:
    with client.batch() as batch:
        pass
    assert batch.results == []


def test_client_batch_not_sent_when_block_raises(server: ServerProcess, client: Client) -> None:
    with ws_connect(server.ws_url) as ws:
        subscribe(ws, "client-abort")
        with pytest.raises(KeyError), client.batch() as batch:
            batch.emit("client-abort", "never")
            raise KeyError("boom")
        assert batch.results is None
        client.emit("client-abort", "marker")
        assert recv_json(ws)["params"]["data"] == "marker"


def test_client_batch_over_limit_raises_rpc_error(start_server: StartServer) -> None:
    srv = start_server(ROCKETWS_MAX_BATCH_SIZE="2")
    with Client(srv.ms_url) as c:
        batch = c.batch()
        for n in range(3):
            batch.emit("client-limit", n)
        with pytest.raises(ServerRpcError) as caught:
            batch.send()
    assert caught.value.code == -32003
    assert caught.value.data is not None


# -- errors ---------------------------------------------------------------------------


def test_client_rpc_error_carries_code_message_data(client: Client) -> None:
    with pytest.raises(ServerRpcError) as caught:
        client.emit("", {"x": 1})
    err = caught.value
    assert (err.code, err.message) == (-32602, "Invalid params")
    assert err.data == {"param": "channel", "reason": "must not be empty"}
    assert str(err).startswith("error -32602: Invalid params")
    assert isinstance(err, RpcError) and isinstance(err, RocketWSError)


def test_client_call_unknown_method_raises_method_not_found(client: Client) -> None:
    with pytest.raises(ServerRpcError) as caught:
        client.call("no_such_method")
    assert caught.value.code == -32601


def test_client_transport_error_names_url_when_server_down() -> None:
    url = f"http://127.0.0.1:{free_port()}/"
    with pytest.raises(TransportError) as caught:
        Client(url, timeout=2).ping()
    err = caught.value
    assert not isinstance(err, BadResponse)
    assert err.url == url and err.reason == "connection refused"
    assert url in str(err) and "may not be running" in str(err)
    assert isinstance(err, RocketWSError) and not isinstance(err, RpcError)


def test_client_transport_error_when_server_never_answers() -> None:
    with socket.socket() as listener:  # accepts connections (backlog) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
        with pytest.raises(TransportError) as caught:
            Client(url, timeout=0.3).ping()
    assert "no answer within 0.3 s" in str(caught.value)


def test_client_bad_response_on_wrong_path(server: ServerProcess) -> None:
    with pytest.raises(BadResponse) as caught:
        Client(server.ms_url + "not-here").ping()
    assert "HTTP 404" in str(caught.value)
    assert isinstance(caught.value, TransportError)


class OneConnectionPeer:
    """A local HTTP peer that accepts ONE connection and answers ``count`` pings on it."""

    def __init__(self, count: int) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/"
        self.requests: list[tuple[bytes, bytes]] = []  # (head, body) of each request
        self.thread = threading.Thread(target=self._serve, args=(count,), daemon=True)
        self.thread.start()

    def _serve(self, count: int) -> None:
        conn, _ = self.listener.accept()
        with conn, conn.makefile("rb") as stream:
            for n in range(1, count + 1):
                head = b"".join(iter(stream.readline, b"\r\n"))
                found = re.search(rb"Content-Length: (\d+)", head)
                assert found is not None, head
                length = int(found[1])
                self.requests.append((head, stream.read(length)))
                body = b'{"jsonrpc":"2.0","result":"pong","id":%d}' % n
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
                )

    def close(self) -> None:
        self.thread.join(5)
        self.listener.close()


def test_client_sends_json_bytes_with_content_length_and_bearer() -> None:
    peer = OneConnectionPeer(1)
    try:
        assert Client(peer.url, api_key="s3cret").ping() == "pong"
    finally:
        peer.close()
    head, body = peer.requests[0]
    assert b"\r\nAuthorization: apikey s3cret\r\n" in head  # issue 10: the documented scheme
    assert b"\r\nContent-Type: application/json\r\n" in head
    assert b"Transfer-Encoding" not in head
    assert body == b'{"jsonrpc":"2.0","method":"ping","id":1}'


def test_client_without_api_key_sends_no_authorization() -> None:
    peer = OneConnectionPeer(1)
    try:
        Client(peer.url).ping()
    finally:
        peer.close()
    assert b"Authorization" not in peer.requests[0][0]


def test_client_calls_reuse_one_keep_alive_connection() -> None:
    peer = OneConnectionPeer(3)  # a second connection would never be answered
    try:
        client = Client(peer.url, timeout=3)
        assert [client.ping() for _ in range(3)] == ["pong"] * 3
    finally:
        peer.close()
    assert len(peer.requests) == 3


def test_client_connections_set_tcp_nodelay(server: ServerProcess, client: Client) -> None:
    adapter = client._session.get_adapter(client.url)
    assert isinstance(adapter, requests.adapters.HTTPAdapter)
    pool = adapter.poolmanager.connection_from_url(client.url)
    conn = pool._get_conn()
    try:
        conn.connect()
        assert conn.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        conn.close()


def test_client_api_key_is_accepted_by_server(server: ServerProcess) -> None:
    assert Client(server.ms_url, api_key="ignored-for-now").ping() == "pong"


# -- pure helpers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("127.0.0.1:59999", "http://127.0.0.1:59999/"),
        ("http://example.com:80/rpc", "http://example.com:80/rpc"),
        ("https://h/", "https://h/"),
        ("  localhost:1  ", "http://localhost:1/"),
        ("http://[::1]:5/", "http://[::1]:5/"),
    ],
)
def test_normalize_url_adds_scheme_and_path(given: str, expected: str) -> None:
    assert normalize_url(given) == expected


@pytest.mark.parametrize("bad", ["ftp://h:1/", "http://", "h:notaport", "http://h:99999/"])
def test_normalize_url_rejects_non_http(bad: str) -> None:
    with pytest.raises(ValueError):
        normalize_url(bad)


def test_server_rpc_error_without_data_formats_code_and_message() -> None:
    err = ServerRpcError(-32601, "Method not found")
    assert str(err) == "error -32601: Method not found"
    assert err == ServerRpcError(-32601, "Method not found", None)


def test_client_docs_example_runs_against_server(server: ServerProcess) -> None:
    """The Python example of docs/shell.md (also in the README) runs as written."""
    doc = (Path(__file__).resolve().parent.parent / "docs" / "shell.md").read_text()
    example = doc.split("## The Python client", 1)[1].split("```python\n", 1)[1].split("```")[0]
    code = example.replace("http://127.0.0.1:59999/", server.ms_url)
    namespace: dict[str, Any] = {}
    # max_queue=None: the 100 unread pushes must not stall the client's closing handshake.
    with ws_connect(server.ws_url, max_queue=None) as ws:
        subscribe(ws, "chat")
        exec(compile(code, "docs/shell.md", "exec"), namespace)
        assert recv_json(ws)["params"]["data"] == {"message": "hi"}
    assert len(namespace["batch"].results) == 100
