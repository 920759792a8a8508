"""Python client for the RocketWS MessagesSource (the backend JSON-RPC 2.0 over HTTP API).

::

    from rocketws.client import Client

    client = Client("http://127.0.0.1:59999/")
    client.emit("chat", {"message": "hi"})      # {"channel": "chat", "delivered": 1}
    with client.batch() as batch:
        batch.emit("chat", {"n": 1})
        batch.emit("news", {"n": 2})
    batch.results                               # one result (or RpcError) per call

Errors::

    RocketWSError (rocketws.exceptions)
    ├── RpcError (rocketws.exceptions)
    │   └── ServerRpcError   the server answered a JSON-RPC error (code, message, data)
    └── TransportError       no usable answer: connection refused, timeout, not JSON...
        └── BadResponse      the server answered, but not as a MessagesSource does
"""

from __future__ import annotations

import itertools
import socket
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import orjson
import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection

from rocketws.config import DEFAULTS
from rocketws.core.exceptions import RocketWSError, RpcError

__all__ = [
    "DEFAULT_URL",
    "Batch",
    "BadResponse",
    "Client",
    "RpcError",
    "ServerRpcError",
    "TransportError",
    "normalize_url",
]

DEFAULT_URL = f"http://{DEFAULTS.backend}/"
DEFAULT_TIMEOUT = 5.0

Params = dict[str, Any] | list[Any] | None


class ServerRpcError(RpcError):
    """The server answered a JSON-RPC error object.

    ``code`` (int), ``message`` (str) and ``data`` (any JSON, or None) are exactly what the
    server sent.  Catch ``rocketws.exceptions.RpcError`` to handle this and local errors alike.
    """

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(data, code=code)
        self._message = message

    @property
    def message(self) -> str:
        return self._message

    def __str__(self) -> str:
        if self.data is None:
            return f"error {self.code}: {self.message}"
        return f"error {self.code}: {self.message} {orjson.dumps(self.data).decode()}"

    def __repr__(self) -> str:
        return f"ServerRpcError({self.code!r}, {self.message!r}, {self.data!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ServerRpcError):
            return NotImplemented
        return (self.code, self.message, self.data) == (other.code, other.message, other.data)

    __hash__ = None  # type: ignore[assignment]


class TransportError(RocketWSError):
    """The request got no usable answer from ``url`` (refused, timed out, reset, ...)."""

    hint = "the server may not be running"

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(url, reason)
        self.url, self.reason = url, reason

    def __str__(self) -> str:
        return f"cannot reach MessagesSource at {self.url}: {self.reason} ({self.hint})"


class BadResponse(TransportError):
    """The server at ``url`` answered, but not with a JSON-RPC response (wrong URL?)."""

    hint = "is this the MessagesSource URL?"

    def __str__(self) -> str:
        return f"unexpected answer from {self.url}: {self.reason} ({self.hint})"


def normalize_url(url: str) -> str:
    """Return ``url`` as ``http(s)://host:port/path``; a bare ``host:port`` gets ``http://``.

    Raises ValueError when it is not an http(s) URL with a host.
    """
    text = url.strip()
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    try:
        parts.port  # noqa: B018 - validates the port
    except ValueError:
        raise ValueError(f"bad port in URL: {url!r}") from None
    path = parts.path or "/"
    query = f"?{parts.query}" if parts.query else ""
    return f"{parts.scheme}://{parts.netloc}{path}{query}"


class Client:
    """A MessagesSource client on one keep-alive HTTP connection (thread-unsafe).

    ``timeout`` is in seconds for connect and for each read.  ``api_key`` (the server's
    ``MESSAGES_SOURCE["API_KEY"]``) is sent as ``Authorization: apikey <api_key>``; it is
    never part of ``repr`` or of an exception's text.  A wrong or missing key raises
    ServerRpcError with code -32030 (the server answers HTTP 401).
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        timeout: float = DEFAULT_TIMEOUT,
        api_key: str | None = None,
    ) -> None:
        self.url = normalize_url(url)
        self.timeout = timeout
        self._ids = itertools.count(1)
        self._session = requests.Session()
        self._session.mount("http://", _NoDelayAdapter())
        self._session.mount("https://", _NoDelayAdapter())
        self._session.headers.update({"Content-Type": "application/json", "Accept": "application/json"})
        if api_key is not None:
            self._session.headers["Authorization"] = f"apikey {api_key}"

    # -- the MessagesSource methods ---------------------------------------------------

    def emit(self, channel: str, data: Any) -> dict[str, Any]:
        """Push ``data`` to the subscribers of ``channel``; returns ``{"channel", "delivered"}``."""
        result: dict[str, Any] = self.call("emit", {"channel": channel, "data": data})
        return result

    def notify_all(self, data: Any) -> dict[str, Any]:
        """Push ``data`` to every open connection; returns ``{"delivered": N}``."""
        result: dict[str, Any] = self.call("notify_all", {"data": data})
        return result

    def available_channels(self) -> list[str]:
        """Return the sorted channels that have at least one subscriber."""
        channels: list[str] = self.call("available_channels")
        return channels

    def total_subscribers(self, channel: str | None = None) -> int:
        """Return subscribers of ``channel``, or open connections when it is None."""
        params = None if channel is None else {"channel": channel}
        count: int = self.call("total_subscribers", params)
        return count

    # -- server-side control: every connection of a user, on every node -----------------

    def disconnect(self, user: str, code: int | None = None, reason: str | None = None) -> dict[str, Any]:
        """Close every connection of ``user`` (code 4000-4999; default 4504, no reconnect).

        Returns ``{"user", "reached"}``: how many connections were closed.
        """
        params: dict[str, Any] = {"user": user}
        if code is not None:
            params["code"] = code
        if reason is not None:
            params["reason"] = reason
        result: dict[str, Any] = self.call("disconnect", params)
        return result

    def subscribe(self, user: str, channel: str) -> dict[str, Any]:
        """Subscribe every connection of ``user`` to ``channel``; ``{"user", "channel", "reached"}``."""
        result: dict[str, Any] = self.call("subscribe", {"user": user, "channel": channel})
        return result

    def unsubscribe(self, user: str, channel: str) -> dict[str, Any]:
        """Unsubscribe every connection of ``user`` from ``channel``; ``{"user", "channel", "reached"}``."""
        result: dict[str, Any] = self.call("unsubscribe", {"user": user, "channel": channel})
        return result

    def refresh(self, user: str, expire_at: float | None = None) -> dict[str, Any]:
        """Set when ``user``'s connections expire (Unix seconds; None: never; a time past:
        now, closed with 4011 after the grace unless they refresh); ``{"user", "expire_at",
        "reached"}``."""
        result: dict[str, Any] = self.call("refresh", {"user": user, "expire_at": expire_at})
        return result

    def ping(self) -> str:
        """Return ``"pong"``; raises TransportError when the server cannot be reached."""
        pong: str = self.call("ping")
        return pong

    # -- generic calls ------------------------------------------------------------------

    def call(self, method: str, params: Params = None) -> Any:
        """Call ``method`` and return its result.

        Raises ServerRpcError for a JSON-RPC error answer, TransportError (or BadResponse)
        when no JSON-RPC answer arrives.
        """
        request_id = next(self._ids)
        answer = self._post(_request(method, params, request_id))
        if not isinstance(answer, dict) or answer.get("id") not in (request_id, None):
            raise BadResponse(self.url, f"unexpected answer {_short(answer)}")
        return _result_or_raise(answer, self.url)

    def batch(self) -> Batch:
        """Start a batch: queue calls, then ``send()`` (or leave the ``with`` block)."""
        return Batch(self)

    def close(self) -> None:
        """Close the keep-alive connection."""
        self._session.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    def _post(self, body: Any) -> Any:
        """POST ``body`` as one bytes payload with a Content-Length (never chunked)."""
        payload = orjson.dumps(body)
        try:
            response = self._session.post(self.url, data=payload, timeout=self.timeout)
        except requests.Timeout:
            raise TransportError(self.url, f"no answer within {self.timeout:g} s") from None
        except requests.ConnectionError as exc:
            raise TransportError(self.url, _connection_reason(exc)) from None
        except requests.RequestException as exc:
            raise TransportError(self.url, str(exc)) from None
        if response.status_code == 204:
            return None
        try:
            answer = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise BadResponse(self.url, f"HTTP {response.status_code} with a non-JSON body") from None
        # HTTP 413 and 401 carry a JSON-RPC error body; any other non-200 is not ours.
        if response.status_code != 200 and not _is_error_answer(answer):
            raise BadResponse(self.url, f"HTTP {response.status_code}")
        return answer


class Batch:
    """Calls queued to be sent as one JSON-RPC batch request.

    Each queuing method returns the call's index in ``results``.  ``send()`` returns one
    entry per call in queuing order: the result, or a ServerRpcError instance (not raised).
    A batch-wide error (e.g. too many calls) raises ServerRpcError; an empty batch sends
    nothing and returns ``[]``.  Used as a context manager it sends on a clean exit.
    """

    def __init__(self, client: Client) -> None:
        self._client = client
        self._calls: list[dict[str, Any]] = []
        self.results: list[Any] | None = None

    def call(self, method: str, params: Params = None) -> int:
        """Queue ``method(params)``; returns its index in the results."""
        if self.results is not None:
            raise RuntimeError("this batch was already sent")
        self._calls.append(_request(method, params, next(self._client._ids)))
        return len(self._calls) - 1

    def emit(self, channel: str, data: Any) -> int:
        """Queue an ``emit``; returns its index in the results."""
        return self.call("emit", {"channel": channel, "data": data})

    def notify_all(self, data: Any) -> int:
        """Queue a ``notify_all``; returns its index in the results."""
        return self.call("notify_all", {"data": data})

    def __len__(self) -> int:
        return len(self._calls)

    def send(self) -> list[Any]:
        """Send the queued calls in one request; returns per-call results (see class doc)."""
        if self.results is not None:
            raise RuntimeError("this batch was already sent")
        if not self._calls:
            self.results = []
            return self.results
        url = self._client.url
        answer = self._client._post(self._calls)
        if isinstance(answer, dict) and _is_error_answer(answer):
            _result_or_raise(answer, url)  # raises
        if not isinstance(answer, list):
            raise BadResponse(url, f"expected a batch answer, got {_short(answer)}")
        by_id = {item.get("id"): item for item in answer if isinstance(item, dict)}
        results: list[Any] = []
        for request in self._calls:
            item = by_id.get(request["id"])
            if item is None:
                raise BadResponse(url, f"no answer for call id {request['id']}")
            try:
                results.append(_result_or_raise(item, url))
            except ServerRpcError as exc:
                results.append(exc)
        self.results = results
        return results

    def __enter__(self) -> Batch:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.send()


class _NoDelayAdapter(HTTPAdapter):
    """Sets TCP_NODELAY on every connection.

    urllib3 writes the headers and the body in two sends; with Nagle on, the body could
    wait for the ACK of the headers, which the server delays (40 ms on Linux).
    """

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        options = list(HTTPConnection.default_socket_options)
        nodelay = (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if nodelay not in options:
            options.append(nodelay)
        kwargs["socket_options"] = options
        super().init_poolmanager(*args, **kwargs)


def _request(method: str, params: Params, request_id: int) -> dict[str, Any]:
    request: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": request_id}
    if params is not None:
        request["params"] = params
    return request


def _is_error_answer(answer: Any) -> bool:
    return isinstance(answer, dict) and isinstance(answer.get("error"), dict)


def _result_or_raise(answer: dict[str, Any], url: str) -> Any:
    if "result" in answer:
        return answer["result"]
    error = answer.get("error")
    if isinstance(error, dict) and isinstance(error.get("code"), int):
        raise ServerRpcError(error["code"], str(error.get("message", "")), error.get("data"))
    raise BadResponse(url, f"not a JSON-RPC response: {_short(answer)}")


def _connection_reason(exc: requests.ConnectionError) -> str:
    text = str(exc)
    for marker, reason in (
        ("Connection refused", "connection refused"),
        ("Name or service not known", "unknown host"),
        ("nodename nor servname", "unknown host"),
        ("Temporary failure in name resolution", "unknown host"),
        ("Connection reset", "connection reset"),
        ("Connection aborted", "connection closed by the server"),
        ("RemoteDisconnected", "connection closed by the server"),
        ("No route to host", "no route to host"),
        ("Network is unreachable", "network unreachable"),
    ):
        if marker in text:
            return reason
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _short(value: Any) -> str:
    text = orjson.dumps(value).decode() if value is not None else "nothing"
    return text if len(text) <= 120 else text[:117] + "..."
