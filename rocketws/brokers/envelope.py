"""How a Publication travels through Redis: a one-line JSON header, then the payload.

::

    {"v":1,"skip":"<session id>"|null}\\n<payload bytes>

The payload (already-encoded push JSON) is carried byte for byte, never re-encoded.
The channel is not in the envelope: it is the Redis channel the envelope was published
on.  Compact JSON never contains a raw newline, so the first ``\\n`` ends the header.
"""

from __future__ import annotations

import orjson

from rocketws.brokers.base import Publication

VERSION = 1


class EnvelopeError(ValueError):
    """Bytes received from Redis are not a RocketWS envelope."""


def encode(publication: Publication) -> bytes:
    """The envelope bytes for ``publication``."""
    header = orjson.dumps({"v": VERSION, "skip": publication.skip})
    return header + b"\n" + publication.payload


def decode(data: bytes, channel: str | None) -> Publication:
    """The Publication in ``data`` for ``channel`` (None: broadcast).

    Raises EnvelopeError if ``data`` is not a version-1 envelope.
    """
    header, sep, payload = data.partition(b"\n")
    if not sep:
        raise EnvelopeError("no header line")
    try:
        meta = orjson.loads(header)
    except orjson.JSONDecodeError as exc:
        raise EnvelopeError(f"bad header: {exc}") from None
    if not isinstance(meta, dict) or meta.get("v") != VERSION:
        raise EnvelopeError("unknown envelope version")
    skip = meta.get("skip")
    if skip is not None and not isinstance(skip, str):
        raise EnvelopeError("skip must be a string or null")
    return Publication(channel, payload, skip)
