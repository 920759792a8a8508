"""How a Publication travels through Redis: a one-line JSON header, then the payload.

::

    {"v":1,"skip":"<session id>"|null}\\n<payload bytes>
    {"v":1,"skip":null,"offset":7,"epoch":"<epoch>"}\\n<payload bytes>   (history channel)

The payload (already-encoded push JSON) is carried byte for byte, never re-encoded.
The channel is not in the envelope: it is the Redis channel the envelope was published
on.  Compact JSON never contains a raw newline, so the first ``\\n`` ends the header.

A ``Control`` (a command for one user's connections, on every node) travels on the
control channel with the same framing, ``"kind":"control"``, the request id and the
node id to answer to; the body is the command as a JSON object.  Each node answers on
the requester's reply channel with one header-only line carrying its count::

    {"v":1,"kind":"control","req":"<id>","reply":"<node id>"}\\n{"action":"disconnect",...}
    {"v":1,"kind":"reply","req":"<id>","n":2}
"""

from __future__ import annotations

from typing import Any

import orjson

from rocketws.brokers.base import ACTIONS, Control, Publication

VERSION = 1


class EnvelopeError(ValueError):
    """Bytes received from Redis are not a RocketWS envelope."""


def encode(publication: Publication) -> bytes:
    """The envelope bytes for ``publication``."""
    header = orjson.dumps({"v": VERSION, "skip": publication.skip})
    return header + b"\n" + publication.payload


def header_open(publication: Publication) -> bytes:
    """The envelope header of ``publication`` without its closing ``}``: the Redis
    script adds ``"offset"`` and ``"epoch"`` on a channel with history."""
    return orjson.dumps({"v": VERSION, "skip": publication.skip})[:-1]


def decode(data: bytes, channel: str | None) -> Publication:
    """The Publication in ``data`` for ``channel`` (None: broadcast), with the offset
    and epoch of its header (a channel with history).

    Raises EnvelopeError if ``data`` is not a version-1 envelope.
    """
    if b"\n" not in data:
        raise EnvelopeError("no header line")
    meta, payload = _header(data)
    skip = meta.get("skip")
    if skip is not None and not isinstance(skip, str):
        raise EnvelopeError("skip must be a string or null")
    offset = meta.get("offset")
    if offset is None:
        return Publication(channel, payload, skip)
    epoch = meta.get("epoch")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 1 or not isinstance(epoch, str):
        raise EnvelopeError("offset must be an integer >= 1 with a string epoch")
    return Publication(channel, payload, skip, offset, epoch)


def _header(data: bytes) -> tuple[dict[str, Any], bytes]:
    header, _sep, body = data.partition(b"\n")
    try:
        meta = orjson.loads(header)
    except orjson.JSONDecodeError as exc:
        raise EnvelopeError(f"bad header: {exc}") from None
    if not isinstance(meta, dict) or meta.get("v") != VERSION:
        raise EnvelopeError("unknown envelope version")
    return meta, body


def encode_control(control: Control, request_id: str, reply_to: str) -> bytes:
    """The envelope of ``control``, answered on ``reply_to``'s reply channel."""
    header = orjson.dumps({"v": VERSION, "kind": "control", "req": request_id, "reply": reply_to})
    return header + b"\n" + orjson.dumps(control._asdict())


_CONTROL_TYPES: dict[str, tuple[type, ...]] = {
    "action": (str,),
    "user": (str,),
    "channel": (str,),
    "code": (int,),
    "reason": (str,),
    "expire_at": (int, float, type(None)),
}


def decode_control(data: bytes) -> tuple[Control, str, str]:
    """(control, request id, node id to answer) from a control envelope.

    Raises EnvelopeError if ``data`` is not one.
    """
    meta, body = _header(data)
    request_id, reply_to = meta.get("req"), meta.get("reply")
    if meta.get("kind") != "control" or not isinstance(request_id, str) or not isinstance(reply_to, str):
        raise EnvelopeError("not a control envelope")
    try:
        fields = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise EnvelopeError(f"bad control body: {exc}") from None
    if not isinstance(fields, dict) or set(fields) != set(_CONTROL_TYPES):
        raise EnvelopeError("bad control body")
    for name, types in _CONTROL_TYPES.items():
        if not isinstance(fields[name], types) or isinstance(fields[name], bool):
            raise EnvelopeError(f"bad control field {name!r}")
    if fields["action"] not in ACTIONS:
        raise EnvelopeError(f"unknown control action {fields['action']!r}")
    return Control(**fields), request_id, reply_to


def encode_reply(request_id: str, count: int) -> bytes:
    """A node's answer to control request ``request_id``: how many connections it reached."""
    return orjson.dumps({"v": VERSION, "kind": "reply", "req": request_id, "n": count})


def decode_reply(data: bytes) -> tuple[str, int]:
    """(request id, count) from a reply.  Raises EnvelopeError if ``data`` is not one."""
    meta, _body = _header(data)
    request_id, count = meta.get("req"), meta.get("n")
    if meta.get("kind") != "reply" or not isinstance(request_id, str):
        raise EnvelopeError("not a reply envelope")
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise EnvelopeError("bad reply count")
    return request_id, count
