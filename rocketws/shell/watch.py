"""``watch``: subscribe to channels over a real WebSocket and report pushes as they come."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from rocketws.shell.parsing import compact_json

__all__ = ["Push", "WatchError", "format_push", "parse_push", "watch"]


class WatchError(Exception):
    """``watch`` could not run; ``unreachable`` is True when the WebSocket did not open."""

    def __init__(self, message: str, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable


@dataclass(frozen=True)
class Push:
    """One push: ``kind`` is "message" (with ``channel``) or "broadcast"."""

    kind: str
    channel: str | None
    data: Any
    ts: float | None


def parse_push(frame: str | bytes) -> Push | None:
    """Return the Push in ``frame``, or None when it is not a push notification."""
    try:
        message = orjson.loads(frame)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(message, dict) or "id" in message:
        return None
    params = message.get("params")
    if message.get("method") not in ("message", "broadcast") or not isinstance(params, dict):
        return None
    ts = params.get("ts")
    return Push(
        kind=message["method"],
        channel=params.get("channel") if message["method"] == "message" else None,
        data=params.get("data"),
        ts=float(ts) if isinstance(ts, int | float) else None,
    )


def format_push(push: Push) -> str:
    """``12:34:56.789 chat {"message": "hi"}``; broadcasts show ``* (broadcast)``."""
    when = push.ts if push.ts is not None else time.time()
    clock = time.strftime("%H:%M:%S", time.localtime(when)) + f".{int(when % 1 * 1000):03d}"
    where = push.channel if push.kind == "message" else "* (broadcast)"
    return f"{clock} {where} {compact_json(push.data)}"


def watch(
    url: str,
    channels: list[str],
    report: Callable[[str], None],
    *,
    count: int | None = None,
    open_timeout: float = 5.0,
) -> int:
    """Subscribe to ``channels`` at ``url`` and ``report`` each push until Ctrl-C.

    Calls ``report`` once with a "watching ..." line when every subscription is confirmed,
    then once per push.  Stops after ``count`` pushes when given.  Returns the number of
    pushes reported.  Raises WatchError when the socket cannot open, a subscription is
    refused, or the server closes the connection.
    """
    from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
    from websockets.sync.client import connect

    try:
        ws = connect(url, open_timeout=open_timeout, close_timeout=1.0, compression=None)
    except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
        reason = _reason(exc)
        raise WatchError(
            f"cannot open WebSocket {url}: {reason} (the server may not be running, or its "
            "WebSocket address differs: use --ws-conn or `connect MS_URL WS_URL`)",
            unreachable=True,
        ) from None
    seen = 0
    try:
        try:
            early = _subscribe(ws, channels)
            report(f"watching {', '.join(channels)} on {url} (Ctrl-C to stop)")
            for push in early:
                report(format_push(push))
                seen += 1
                if count is not None and seen >= count:
                    return seen
            while count is None or seen < count:
                pushed = parse_push(ws.recv())
                if pushed is not None:
                    report(format_push(pushed))
                    seen += 1
        except ConnectionClosed as exc:
            rcvd = exc.rcvd
            detail = f"code {rcvd.code} {rcvd.reason}".strip() if rcvd else "no close frame"
            raise WatchError(f"the server closed the WebSocket ({detail})") from None
        except KeyboardInterrupt:
            pass
        return seen
    finally:
        try:
            ws.close()
        except (OSError, KeyboardInterrupt):  # pragma: no cover - best effort on the way out
            pass


def _subscribe(ws: Any, channels: list[str]) -> list[Push]:
    """Subscribe to every channel in one batch; returns pushes that arrived meanwhile."""
    batch = [
        {"jsonrpc": "2.0", "method": "subscribe", "params": {"channel": c}, "id": i}
        for i, c in enumerate(channels, 1)
    ]
    ws.send(orjson.dumps(batch).decode())
    early: list[Push] = []
    while True:
        frame = ws.recv()
        answer = orjson.loads(frame)
        if isinstance(answer, list):
            break
        if isinstance(answer, dict) and "error" in answer:  # batch-wide error
            answer = [answer]
            break
        push = parse_push(frame)
        if push is not None:
            early.append(push)
    for item in answer:
        error = item.get("error") if isinstance(item, dict) else None
        if error:
            index = item.get("id")
            channel = channels[index - 1] if isinstance(index, int) else "?"
            data = error.get("data")
            extra = f" {compact_json(data)}" if data is not None else ""
            raise WatchError(
                f"subscribe {channel!r}: error {error.get('code')}: {error.get('message')}{extra}"
            )
    return early


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]
