"""Channel streams: offsets in pushes, client positions, and exact recovery (pure).

A push on a channel with history is the ``message`` notification with two more params,
``"offset"`` (integer) and ``"epoch"`` (string), added by the broker when it assigns
the offset: ``with_position`` splices them into the already-encoded push, so the push is
encoded once and the Redis Lua script does the same splice byte for byte.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

from rocketws.brokers.base import Position
from rocketws.core.exceptions import InvalidParams
from rocketws.core.jsonrpc import RawJson, loads

PUSH_PREFIX = b'{"jsonrpc":"2.0","method":"message","params":'
"""How every ``message`` push starts (``jsonrpc.encode_message_push``, compact JSON)."""


class HistorySettings(NamedTuple):
    """The node's history settings (``HISTORY`` in settings.py)."""

    default_limit: int = 100  # publications a `history` without `limit` answers
    max_limit: int = 1000  # the largest `limit` accepted
    recovery_max: int = 300  # publications a recovery may answer; more: recovered false


HISTORY_SETTINGS = HistorySettings()

MAX_EPOCH_LENGTH = 64
MAX_OFFSET = 2**53 - 1  # what a JavaScript number holds exactly (and Lua's doubles in Redis)
MAX_IDEMPOTENCY_KEY_LENGTH = 255


def with_position(payload: bytes, offset: int, epoch: str) -> bytes:
    """``payload`` (a ``message`` push, ending with ``}}``) with ``offset`` and ``epoch``
    added as the last params.  ``epoch`` must be JSON-safe (brokers make hex ones)."""
    return b'%s,"offset":%d,"epoch":"%s"}}' % (payload[:-2], offset, epoch.encode())


def publication_of(payload: bytes) -> Any:
    """The params object of a stored push (``channel``, ``data``, ``ts``, ``offset``,
    ``epoch``), decoded."""
    return loads(payload[len(PUSH_PREFIX) : -1])


def publication_fragment(payload: bytes) -> RawJson:
    """The params object of a stored push as encoded JSON, for an answer (``history``,
    a recovery): copied into the response as is, never decoded and encoded again."""
    return RawJson(payload[len(PUSH_PREFIX) : -1])


def position_param(value: Any, param: str) -> Position:
    """A client's ``{"offset": int >= 0, "epoch": str}`` as a Position; InvalidParams
    (-32602) naming ``param`` otherwise."""
    if not isinstance(value, dict) or set(value) != {"offset", "epoch"}:
        raise InvalidParams({"param": param, "reason": 'must be {"offset": integer, "epoch": string}'})
    offset, epoch = value["offset"], value["epoch"]
    if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset <= MAX_OFFSET:
        raise InvalidParams({"param": param, "reason": f"offset must be an integer from 0 to {MAX_OFFSET}"})
    if not isinstance(epoch, str) or len(epoch) > MAX_EPOCH_LENGTH:
        raise InvalidParams(
            {"param": param, "reason": f"epoch must be a string of at most {MAX_EPOCH_LENGTH}"}
        )
    return Position(offset, epoch)


def idempotency_key_param(value: Any) -> str | None:
    """An emit's ``idempotency_key`` (None: absent); InvalidParams unless a non-empty
    string of at most MAX_IDEMPOTENCY_KEY_LENGTH characters."""
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_IDEMPOTENCY_KEY_LENGTH:
        raise InvalidParams(
            {
                "param": "idempotency_key",
                "reason": f"must be a non-empty string of at most {MAX_IDEMPOTENCY_KEY_LENGTH} characters",
            }
        )
    return value


class Recovery(NamedTuple):
    """The outcome of a recovery: ``publications`` (offset, push payload) after the
    client's offset, complete and in order, or none with ``recovered`` False; and the
    position the client is at afterwards (``offset``/``epoch``)."""

    recovered: bool
    publications: list[tuple[int, bytes]]
    offset: int
    epoch: str


def recover(
    since: Position,
    history: Iterable[tuple[int, bytes]],
    top: int,
    epoch: str,
    live: Iterable[tuple[int, str, bytes]],
    cap: int,
) -> Recovery:
    """Merge a stream read with the live publications buffered during it, exactly.

    ``history``: what the broker read after ``since.offset`` (oldest first), with the
    stream's ``top`` and ``epoch`` at that read; ``live``: (offset, epoch, payload) of
    publications delivered while the read was in flight.  ``recovered`` is True only if
    the epoch is the client's and every offset from ``since.offset + 1`` to the highest
    one seen is present (no gap), and there are at most ``cap`` of them; otherwise no
    publications (never a partial recovery) and the current position.
    """
    merged: dict[int, bytes] = {}
    for offset, payload in history:
        merged[offset] = payload
    highest = top
    for offset, pub_epoch, payload in live:
        if pub_epoch == epoch:
            merged.setdefault(offset, payload)
            highest = max(highest, offset)
        else:  # the stream changed epoch under the read: nothing after it can be trusted
            return Recovery(False, [], offset, pub_epoch)
    failed = Recovery(False, [], highest, epoch)
    if since.epoch != epoch or since.offset > highest:
        return failed
    wanted = highest - since.offset
    if wanted > cap:
        return failed
    ordered = sorted(item for item in merged.items() if item[0] > since.offset)
    if len(ordered) != wanted:  # a gap: the stream's oldest entries are gone, or a read lost some
        return failed
    return Recovery(True, ordered, highest, epoch)
