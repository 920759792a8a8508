"""Unit tests of the JSON-RPC codec (rocketws.core.jsonrpc)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from rocketws.core import jsonrpc
from rocketws.core.jsonrpc import Call, Invalid

from .support import DECODER_PATHS as PATHS
from .support import emit_doc, nested


def test_parse_single_request() -> None:
    parsed = jsonrpc.parse(b'{"jsonrpc":"2.0","method":"m","params":[1],"id":"a"}')
    assert not parsed.batch
    (entry,) = parsed.entries
    assert isinstance(entry, Call)
    assert (entry.method, entry.params, entry.id, entry.notification) == ("m", [1], "a", False)


def test_parse_notification_and_null_id() -> None:
    (note,) = jsonrpc.parse('{"jsonrpc":"2.0","method":"m"}').entries
    assert isinstance(note, Call) and note.notification and note.params == []
    (null_id,) = jsonrpc.parse('{"jsonrpc":"2.0","method":"m","id":null}').entries
    assert isinstance(null_id, Call) and not null_id.notification and null_id.id is None


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ("1", "object"),
        ('{"method":"m","id":1}', "jsonrpc"),
        ('{"jsonrpc":"2.1","method":"m","id":1}', "jsonrpc"),
        ('{"jsonrpc":"2.0","method":5,"id":1}', "method"),
        ('{"jsonrpc":"2.0","method":"m","params":"x","id":1}', "params"),
        ('{"jsonrpc":"2.0","method":"m","id":true}', "id"),
        ('{"jsonrpc":"2.0","method":"m","id":[1]}', "id"),
        ('{"jsonrpc":"2.0","method":"m","id":1,"extra":1}', "extra"),
    ],
)
def test_parse_invalid_requests(doc: str, reason: str) -> None:
    (entry,) = jsonrpc.parse(doc).entries
    assert isinstance(entry, Invalid)
    assert reason in entry.reason


def test_parse_invalid_keeps_valid_id() -> None:
    (entry,) = jsonrpc.parse('{"jsonrpc":"2.0","method":5,"id":"x"}').entries
    assert isinstance(entry, Invalid) and entry.id == "x"


def test_parse_batch_mixed_and_empty() -> None:
    parsed = jsonrpc.parse('[{"jsonrpc":"2.0","method":"m","id":1}, 2]')
    assert parsed.batch and isinstance(parsed.entries[0], Call) and isinstance(parsed.entries[1], Invalid)
    empty = jsonrpc.parse("[]")
    assert not empty.batch and isinstance(empty.entries[0], Invalid)


@pytest.mark.parametrize("doc", [b"", b"{", b"\xff\xfe", b"NaN", b'{"a": Infinity}', b"[1,]"])
def test_parse_errors(doc: bytes) -> None:
    with pytest.raises(jsonrpc.ParseError):
        jsonrpc.parse(doc)


def test_big_integers_round_trip_exactly() -> None:
    text = '{"id": 123456789012345678901234567890, "f": 0.1}'
    assert jsonrpc.dumps(jsonrpc.loads(text)) == b'{"id":123456789012345678901234567890,"f":0.1}'
    with pytest.raises(jsonrpc.ParseError):
        jsonrpc.loads(b'{"id": 123456789012345678901234567890, "x": NaN}')


def test_encode_pushes() -> None:
    message = json.loads(jsonrpc.encode_message_push("chat", {"a": [1]}, 12.5))
    assert message == {
        "jsonrpc": "2.0",
        "method": "message",
        "params": {"channel": "chat", "data": {"a": [1]}, "ts": 12.5},
    }
    broadcast = json.loads(jsonrpc.encode_broadcast_push(None, 1.0))
    assert broadcast == {"jsonrpc": "2.0", "method": "broadcast", "params": {"data": None, "ts": 1.0}}


def test_error_response_shape() -> None:
    assert jsonrpc.error_response(None, -32600) == {
        "jsonrpc": "2.0",
        "error": {"code": -32600, "message": "Invalid Request"},
        "id": None,
    }
    assert jsonrpc.error_response(3, -32001, {"channel": "c"})["error"]["data"] == {"channel": "c"}


@pytest.mark.parametrize(
    "doc",
    [
        '{"id": 18446744073709551616}',  # 2**64: 20 digits
        '[1, {"id": -123456789012345678901234567890}]',
        '{"id": 12345678901234567890123}',
    ],
)
def test_integers_over_64_bits_stay_exact_from_bytes_and_text(doc: str) -> None:
    assert jsonrpc.loads(doc) == json.loads(doc)
    assert jsonrpc.loads(doc.encode()) == json.loads(doc)


def test_long_digit_run_inside_a_string_is_still_decoded() -> None:
    doc = '{"data": "12345678901234567890", "n": 1234567890123456789}'
    assert jsonrpc.loads(doc) == {"data": "12345678901234567890", "n": 1234567890123456789}


def test_encode_one_response_and_a_batch() -> None:
    assert jsonrpc.encode(jsonrpc.Result(1, "pong")) == b'{"jsonrpc":"2.0","result":"pong","id":1}'
    batch: list[jsonrpc.Response] = [
        jsonrpc.Result("a", [1]),
        jsonrpc.ErrorResponse(None, -32600, {"reason": "x"}),
    ]
    assert json.loads(jsonrpc.encode(batch)) == [
        {"jsonrpc": "2.0", "result": [1], "id": "a"},
        {
            "jsonrpc": "2.0",
            "error": {"code": -32600, "message": "Invalid Request", "data": {"reason": "x"}},
            "id": None,
        },
    ]
    big = 123456789012345678901234567890
    assert jsonrpc.encode(jsonrpc.Result(big, None)) == b'{"jsonrpc":"2.0","result":null,"id":%d}' % big


def test_error_response_message_defaults_to_the_code_name() -> None:
    assert jsonrpc.ErrorResponse(1, -32601).message == "Method not found"
    assert jsonrpc.ErrorResponse(1, -32099).message == "Server error"
    assert jsonrpc.ErrorResponse(1, -32001, None, "custom").message == "custom"


# -- nesting limit and the stdlib path's number rules, on both decoder paths ---------------

DEPTH_CASES = [(62, True), (63, False), (100, False), (325, False), (1000, False), (1030, False)]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("kind", ["array", "object"])
@pytest.mark.parametrize(("data_depth", "accepted"), DEPTH_CASES)
def test_parse_nesting_limit_is_the_same_on_both_paths(
    path: str, kind: str, data_depth: int, accepted: bool
) -> None:
    doc = emit_doc(nested(data_depth, PATHS[path], kind))  # document depth: data_depth + 2
    for payload in (doc, doc.encode()):
        parsed = jsonrpc.parse(payload)
        (entry,) = parsed.entries
        if accepted:
            assert isinstance(entry, Call) and entry.method == "emit"
        else:
            assert entry == Invalid(None, "nesting deeper than 64 levels (RPC MAX_NESTING_DEPTH)")


@pytest.mark.parametrize("path", PATHS)
def test_parse_nesting_limit_counts_a_batch_and_is_configurable(path: str) -> None:
    member = emit_doc(nested(7, PATHS[path]))  # 9 levels, 10 in a batch
    assert jsonrpc.parse(f"[{member}]", max_depth=10).batch
    assert jsonrpc.parse(f"[{member}]", max_depth=9).entries == [
        Invalid(None, "nesting deeper than 9 levels (RPC MAX_NESTING_DEPTH)")
    ]
    wide = "[" + ",".join([member] * 50) + "]"  # many openers, shallow: decoded
    assert len(jsonrpc.parse(wide, max_depth=10).entries) == 50


@pytest.mark.parametrize("path", PATHS)
def test_parse_brackets_inside_strings_neither_hide_nor_add_depth(path: str) -> None:
    # The string brackets would balance the real ones if they were counted as structure.
    hidden = f'["]]]]]]", {nested(5, PATHS[path])}, "[[[[[["]'
    assert jsonrpc.parse(hidden, max_depth=6).batch  # 6 real levels
    assert not jsonrpc.parse(hidden, max_depth=5).batch
    assert jsonrpc.parse('["' + "[" * 500 + '", ' + PATHS[path] + "]", max_depth=3).batch


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("number", ["1e400", "-1e400", "1E+999"])
def test_numbers_beyond_double_range_are_parse_errors_on_both_paths(path: str, number: str) -> None:
    with pytest.raises(jsonrpc.ParseError):
        jsonrpc.parse(emit_doc(f"[{number}, {PATHS[path]}]"))


def test_loads_refuses_deep_documents_with_a_parse_error() -> None:
    for leaf in PATHS.values():
        with pytest.raises(jsonrpc.ParseError, match="nesting deeper than 64"):
            jsonrpc.loads(nested(400, leaf))


# -- properties (hypothesis; derandomized, bounded) ----------------------------------------

PROPERTY = settings(derandomize=True, max_examples=250, deadline=None, database=None)
JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()  # any size: beyond 64 bits they take the stdlib path
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20,
)
IDS = st.none() | st.integers() | st.text(max_size=12) | st.floats(allow_nan=False, allow_infinity=False)


def _mutated(text: str, cuts: list[tuple[int, str]]) -> str:
    for position, insert in cuts:
        i = position % (len(text) + 1)
        text = text[:i] + insert + text[i + 1 :]
    return text


JSONISH = st.one_of(
    st.binary(max_size=120),
    st.text(max_size=120),
    st.builds(
        _mutated,
        JSON_VALUES.map(json.dumps),
        st.lists(
            st.tuples(
                st.integers(0, 200),
                st.sampled_from(["[", "]", "{", "}", '"', "\\", ",", ":", "-", "9", "e", ""]),
            ),
            max_size=3,
        ),
    ),
)


@PROPERTY
@given(JSONISH)
def test_property_parse_raises_only_parse_error(doc: str | bytes) -> None:
    try:
        parsed = jsonrpc.parse(doc)
    except jsonrpc.ParseError:
        return
    assert parsed.entries and all(isinstance(e, (Call, Invalid)) for e in parsed.entries)


@PROPERTY
@example(-(2**63) - 1, "m", [])  # 19 digits after a minus: beyond orjson's exact range
@example(2**64, "m", {})
@given(
    IDS,
    st.text(max_size=10),
    st.lists(JSON_VALUES, max_size=3) | st.dictionaries(st.text(max_size=5), JSON_VALUES, max_size=3),
)
def test_property_valid_requests_round_trip_their_ids_exactly(rid: Any, method: str, params: Any) -> None:
    text = json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": rid})
    for doc in (text, text.encode()):
        (entry,) = jsonrpc.parse(doc).entries
        assert isinstance(entry, Call)
        assert (entry.method, entry.params, entry.notification) == (method, params, False)
        assert type(entry.id) is type(rid) and entry.id == rid
        echoed = json.loads(jsonrpc.encode(jsonrpc.Result(entry.id, None)))["id"]
        assert type(echoed) is type(rid) and echoed == rid


def _outcome(doc: str) -> Any:
    try:
        parsed = jsonrpc.parse(doc)
    except jsonrpc.ParseError:
        return "parse error"
    if not parsed.batch:  # refused as a whole (too deep)
        return parsed.entries
    return parsed.entries[:-1]


@PROPERTY
@given(JSONISH.filter(lambda d: isinstance(d, str)) | JSON_VALUES.map(json.dumps))
def test_property_both_decoder_paths_agree(member: str) -> None:
    """The same document, with a last member that sends it to orjson or to the stdlib."""
    assert _outcome(f"[{member},{PATHS['orjson']}]") == _outcome(f"[{member},{PATHS['stdlib']}]")


@pytest.mark.parametrize("n", [-(2**63) - 1, -(2**63), 2**63 - 1, 2**64 - 1, 2**64, -(10**19), 10**19 - 1])
def test_integers_at_the_64_bit_edges_stay_exact(n: int) -> None:
    for doc in (f'{{"id": {n}}}', f'{{"id": {n}}}'.encode()):
        value = jsonrpc.loads(doc)["id"]
        assert type(value) is int and value == n


@pytest.mark.parametrize("path", PATHS)
def test_parse_nesting_limit_in_batches_beside_params(path: str) -> None:
    """Deep values elsewhere than in params, non-object members, members without params:
    the batch shortcut must not let any of them through."""
    deep = nested(70, PATHS[path])
    flat = emit_doc('"x"')
    for member in (
        f'{{"jsonrpc":"2.0","method":"m","id":{deep}}}',  # a deep id (invalid anyway)
        f'{{"jsonrpc":"2.0","method":"m","extra":{deep}}}',
        deep,  # a member that is not an object
        f'{{"jsonrpc":"2.0","method":"m","params":{deep}}}',
    ):
        batch = "[" + ",".join([flat] * 40 + [member] + ['{"jsonrpc":"2.0","method":"ping"}'] * 40) + "]"
        assert jsonrpc.parse(batch).entries == [
            Invalid(None, "nesting deeper than 64 levels (RPC MAX_NESTING_DEPTH)")
        ]
    shallow = "[" + ",".join([flat] * 40 + [emit_doc(nested(60, PATHS[path]))]) + "]"
    assert len(jsonrpc.parse(shallow).entries) == 41
