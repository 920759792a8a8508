"""JSON-RPC 2.0 codec: bytes in, typed calls out; typed responses and pushes in, bytes out.

No I/O and no dispatch here (see :mod:`rocketws.core.rpc`).  Parsing validates each
request object by hand (spec section 4) so that a batch with some invalid members still
gets one response per member (spec section 6), which a whole-document schema check
cannot do.  Responses are ``Result`` / ``ErrorResponse`` values until ``encode`` turns a
whole response document into bytes, once.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from itertools import chain, compress, repeat
from typing import Any, NamedTuple

import orjson

from rocketws.core.codes import RPC_MESSAGES, RpcCode

__all__ = [
    "Call",
    "Invalid",
    "Entry",
    "Parsed",
    "ParseError",
    "MAX_NESTING_DEPTH",
    "MAX_NESTING_CEILING",
    "parse",
    "loads",
    "dumps",
    "RawJson",
    "Result",
    "ErrorResponse",
    "new",
    "Response",
    "encode",
    "error_response",
    "result_response",
    "encode_message_push",
    "encode_broadcast_push",
]


class ParseError(ValueError):
    """The payload is not valid UTF-8 JSON (answered with -32700 and id null)."""


# The types made on every request (Call, Parsed, Result) are NamedTuples: as immutable as
# a frozen dataclass, whose __init__ (object.__setattr__ per field) costs 3 times more.
# The hot paths make them with ``new(Type, fields)`` (tuple.__new__), skipping the
# generated Python-level __new__.
new = tuple.__new__


class Call(NamedTuple):
    """A valid request object. ``id`` is absent (``notification``) or str/number/null."""

    method: str
    params: list[Any] | dict[str, Any]
    id: Any
    notification: bool


@dataclass(frozen=True, slots=True)
class Invalid:
    """A batch member or document that is not a valid request object (-32600)."""

    id: Any
    reason: str


Entry = Call | Invalid


class Parsed(NamedTuple):
    """A parsed document: its entries, and whether it was a batch (a JSON array)."""

    entries: list[Entry]
    batch: bool


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


MAX_NESTING_DEPTH = 64
"""Default nesting limit of a document: every array and object is a level, the outermost
is level 1 (``RPC["MAX_NESTING_DEPTH"]`` in the settings)."""
MAX_NESTING_CEILING = 200
"""The highest nesting limit allowed: far below the stdlib decoder's recursion (``_decode``)
and orjson's encoder limit (254 levels; a push nests its data as deep as a request)."""


class _TooDeep(Exception):
    """A document nests deeper than the limit (parse answers it with one Invalid entry)."""


# Each digit -> "0", "[" and "{" -> "[", "-" stays, every other byte -> " ": a run of 20
# digits is then a plain substring search, about 15 times faster than a regular expression
# over a 15 KB batch, and the same translated bytes count the openers (an upper bound of
# the depth).  orjson keeps integers exact from -2**63 to 2**64 - 1: beyond, 20 digits, or
# 19 after a minus sign (-9223372036854775809).
_SCAN = bytes(
    0x30 if 0x30 <= b <= 0x39 else 0x5B if b in b"[{" else 0x2D if b == 0x2D else 0x20 for b in range(256)
)
_RUN_19 = b"0" * 19
_LONG_RUN = b"0" * 20
_LONG_NEGATIVE = b"-" + _RUN_19


def _beyond_64_bits(scanned: bytes) -> bool:
    """Whether translated bytes hold an integer candidate orjson cannot keep exact."""
    return scanned.find(_RUN_19) >= 0 and (scanned.find(_LONG_RUN) >= 0 or scanned.find(_LONG_NEGATIVE) >= 0)


_CONTAINERS = frozenset((dict, list))


def _deeper_than(doc: Any, limit: int, openers: int) -> bool:
    """Whether ``doc`` nests deeper than ``limit`` levels; ``openers`` bounds its containers.

    Level by level, with C-level iteration (``map``/``compress``); it stops as soon as the
    containers not yet seen (at most ``openers`` minus those seen) cannot reach past the
    limit, so a batch of calls with flat params is decided without visiting the params.
    """
    level = [doc]
    depth = seen = 1
    while depth + openers - seen > limit:
        kinds = list(map(type, level))
        dicts = kinds.count(dict)
        if dicts == len(level):
            values = list(chain.from_iterable(map(dict.values, level)))
        elif dicts == 0:
            values = list(chain.from_iterable(level))
        else:
            values = list(chain.from_iterable([c.values() if type(c) is dict else c for c in level]))
        level = list(compress(values, map(_CONTAINERS.__contains__, map(type, values))))
        if not level:
            return False
        depth += 1
        seen += len(level)
        if depth > limit:
            return True
    return False


def _flat_batch(doc: Any, limit: int, openers: int) -> bool:
    """Whether ``doc`` is a batch of objects provably within ``limit`` without a walk.

    A path from the root goes through a member (level 2), then either its ``params``
    (level 3) or another container, then only containers not counted here: so the depth
    is at most 3 + openers - 1 - members - container params.  A batch of requests with
    flat params (the usual one) is decided in C-level passes over the members.
    """
    if type(doc) is not list:
        return False
    try:
        kinds = list(map(type, map(dict.get, doc, repeat("params"))))
    except TypeError:  # a member that is not an object
        return False
    return 3 + openers - 1 - len(doc) - kinds.count(dict) - kinds.count(list) <= limit


def _too_deep_doc(doc: Any, limit: int, openers: int) -> bool:
    """Whether a decoded document with ``openers`` brackets nests deeper than ``limit``."""
    return not _flat_batch(doc, limit, openers) and _deeper_than(doc, limit, openers)


def _reject_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):  # orjson refuses these too (1e400 is not a double)
        raise ValueError(f"number out of range: {text}")
    return value


def loads(data: bytes | str) -> Any:
    """Decode strict JSON.  Raises ParseError, with the decoder's message.

    orjson, unless the text holds a run of 20+ digits (or 19 after a minus sign): orjson
    turns integers beyond -2**63 .. 2**64 - 1 into floats, so those documents go to the
    stdlib decoder, which keeps them exact (NaN/Infinity and numbers beyond the double
    range still rejected).  A document nested
    deeper than MAX_NESTING_DEPTH is refused (ParseError) on both paths.
    """
    try:
        return _decode(data, MAX_NESTING_DEPTH)
    except _TooDeep as exc:
        raise ParseError(str(exc)) from None


def _decode(data: bytes | str, max_depth: int) -> Any:
    """``loads`` with a nesting limit: raises ParseError, or _TooDeep past ``max_depth``.

    The depth is checked only when the document has more openers (``[``, ``{``) than
    ``max_depth``: one count over bytes already translated for the number scan.
    """
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    scanned = raw.translate(_SCAN)
    openers = scanned.count(b"[")
    if scanned.find(_RUN_19) < 0 or not _beyond_64_bits(scanned):  # the first test inline: hot
        try:
            doc = orjson.loads(data)  # refuses more than 1024 levels itself
        except orjson.JSONDecodeError as exc:
            if openers > max_depth and "depth" in str(exc):
                raise _TooDeep(_too_deep(max_depth)) from None
            raise ParseError(str(exc)) from None
        if openers > max_depth and _too_deep_doc(doc, max_depth, openers):
            raise _TooDeep(_too_deep(max_depth))
        return doc
    try:
        text = data if isinstance(data, str) else bytes(data).decode("utf-8")
        doc = json.loads(text, parse_constant=_reject_constant, parse_float=_reject_float)
    except RecursionError:
        # The stdlib decoder recurses per level (about 990 before the interpreter's
        # limit); every limit allowed (MAX_NESTING_CEILING) is far below that.
        raise _TooDeep(_too_deep(max_depth)) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ParseError(str(exc)) from None
    if openers > max_depth and _too_deep_doc(doc, max_depth, openers):
        raise _TooDeep(_too_deep(max_depth))
    if _has_lone_surrogate(doc):  # orjson refuses these; so must this path
        raise ParseError("lone UTF-16 surrogate in a string (not valid Unicode)")
    return doc


def _too_deep(max_depth: int) -> str:
    return f"nesting deeper than {max_depth} levels (RPC MAX_NESTING_DEPTH)"


_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _has_lone_surrogate(obj: Any) -> bool:
    # json.loads joins valid surrogate pairs into one code point, so any surrogate left
    # in a string is a lone one, which UTF-8 cannot encode.
    if isinstance(obj, str):
        return _SURROGATE.search(obj) is not None
    if isinstance(obj, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in obj.items())
    if isinstance(obj, list):
        return any(_has_lone_surrogate(v) for v in obj)
    return False


class RawJson(bytes):
    """Already-encoded JSON (one value), copied verbatim into what ``dumps`` makes: the
    publications of a history or recovery answer are never decoded and encoded again."""

    __slots__ = ()


def _raw(value: Any) -> Any:
    if isinstance(value, RawJson):
        return orjson.Fragment(bytes(value))
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def _raw_decoded(value: Any) -> Any:
    if isinstance(value, RawJson):
        return loads(bytes(value))
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def dumps(obj: Any) -> bytes:
    """Encode to compact UTF-8 JSON bytes (stdlib fallback for integers over 64 bits);
    ``RawJson`` values are copied verbatim (decoded first on the fallback)."""
    try:
        return orjson.dumps(obj, default=_raw)
    except TypeError:
        return json.dumps(
            obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_raw_decoded
        ).encode()


def _valid_id(value: Any) -> bool:
    if value is None or isinstance(value, str):
        return True
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and math.isfinite(value)


_NO_ID: Any = object()


_PARAMS_TYPES = frozenset((dict, list))
_FAST_ID_TYPES = frozenset((int, str))  # not bool: type(True) is bool


def _entry(obj: Any) -> Entry:
    # `type(x) is` checks: the decoders make exact dict/list/str/int objects, and these
    # run on every request.  First the common case, a complete request in one test.
    if (
        type(obj) is dict
        and len(obj) == 4
        and obj.get("jsonrpc") == "2.0"
        and type(method := obj.get("method")) is str
        and type(params := obj.get("params")) in _PARAMS_TYPES
        and type(rid := obj.get("id")) in _FAST_ID_TYPES
    ):
        return new(Call, (method, params, rid, False))
    if type(obj) is not dict:
        return Invalid(None, f"request must be an object, got {type(obj).__name__}")
    rid = obj.get("id", _NO_ID)
    has_id = rid is not _NO_ID
    if not has_id:
        rid = None
    elif type(rid) is not int and type(rid) is not str and not _valid_id(rid):
        return Invalid(None, "id must be a string, a number or null")
    if obj.get("jsonrpc") != "2.0":
        return Invalid(rid, 'jsonrpc must be exactly "2.0"')
    method = obj.get("method")
    if type(method) is not str:
        return Invalid(rid, "method must be a string")
    if "params" in obj:
        params = obj["params"]
        if type(params) is not dict and type(params) is not list:
            return Invalid(rid, "params must be an array or an object")
        members = 3 + has_id
    else:
        params = []
        members = 2 + has_id
    # Allowed members: jsonrpc, method, params and id (spec section 4); counting them is
    # cheaper than a set difference on every request.
    if len(obj) != members:
        extra = set(obj) - {"jsonrpc", "method", "params", "id"}
        return Invalid(rid, f"unexpected member(s): {', '.join(sorted(extra))}")
    return new(Call, (method, params, rid, not has_id))


def parse(data: bytes | str, max_depth: int = MAX_NESTING_DEPTH) -> Parsed:
    """Parse one JSON-RPC document (a request, a notification or a batch).

    Raises ParseError for invalid JSON.  An empty batch is one Invalid entry, as the
    spec answers it with a single error rather than an array; so is a document nested
    deeper than ``max_depth`` (arrays and objects, the outermost is level 1), whatever
    its members.
    """
    try:
        doc = _decode(data, max_depth)
    except _TooDeep as exc:
        return Parsed([Invalid(None, str(exc))], batch=False)
    if isinstance(doc, list):
        if not doc:
            return Parsed([Invalid(None, "empty batch")], batch=False)
        return new(Parsed, ([_entry(item) for item in doc], True))
    return new(Parsed, ([_entry(doc)], False))


class Result(NamedTuple):
    """A success response (spec section 5): ``result`` for the request ``id``."""

    id: Any
    result: Any

    def wire(self) -> dict[str, Any]:
        """The response object, ready for ``dumps``."""
        return {"jsonrpc": "2.0", "result": self.result, "id": self.id}


@dataclass(frozen=True, slots=True)
class ErrorResponse:
    """An error response (spec section 5.1); ``message`` defaults to the code's name."""

    id: Any
    code: int
    data: Any = None
    message: str = ""

    def __post_init__(self) -> None:
        if not self.message:
            object.__setattr__(self, "message", RPC_MESSAGES.get(self.code, "Server error"))

    def wire(self) -> dict[str, Any]:
        """The response object, ready for ``dumps``."""
        error: dict[str, Any] = {"code": int(self.code), "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return {"jsonrpc": "2.0", "error": error, "id": self.id}


Response = Result | ErrorResponse


def encode(response: Response | list[Response]) -> bytes:
    """Encode one response, or a batch's responses as one array (spec section 6).

    Raises TypeError or ValueError for a result that JSON cannot hold (a bug upstream).
    """
    if isinstance(response, list):
        # Result.wire() inlined for the common member: one call less per response.
        return dumps(
            [
                {"jsonrpc": "2.0", "result": r.result, "id": r.id} if type(r) is Result else r.wire()
                for r in response
            ]
        )
    return dumps(response.wire())


def error_response(rid: Any, code: int, data: Any = None, message: str | None = None) -> dict[str, Any]:
    """A JSON-RPC error response object."""
    return ErrorResponse(rid, code, data, message or "").wire()


def result_response(rid: Any, result: Any) -> dict[str, Any]:
    """A JSON-RPC success response object."""
    return {"jsonrpc": "2.0", "result": result, "id": rid}


def invalid_response(entry: Invalid) -> ErrorResponse:
    """The -32600 response for an invalid entry."""
    return ErrorResponse(entry.id, RpcCode.INVALID_REQUEST, {"reason": entry.reason})


def encode_message_push(channel: str, data: Any, ts: float) -> bytes:
    """The ``message`` notification pushed to a channel's subscribers."""
    push = {"jsonrpc": "2.0", "method": "message", "params": {"channel": channel, "data": data, "ts": ts}}
    try:  # orjson directly: this runs once per emit
        return orjson.dumps(push)
    except TypeError:
        return dumps(push)


def encode_broadcast_push(data: Any, ts: float) -> bytes:
    """The ``broadcast`` notification pushed to every open connection."""
    return dumps({"jsonrpc": "2.0", "method": "broadcast", "params": {"data": data, "ts": ts}})


def encode_subscription_push(subscribed: bool, channel: str) -> bytes:
    """The ``subscribed``/``unsubscribed`` notification: a backend changed this connection's
    subscriptions (server-side ``subscribe``/``unsubscribe``)."""
    method = "subscribed" if subscribed else "unsubscribed"
    return dumps({"jsonrpc": "2.0", "method": method, "params": {"channel": channel}})
