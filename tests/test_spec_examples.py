"""Unit tests of the JSON-RPC spec's example methods (rocketws/core/spec_examples.py).

The spec's section 7 examples run verbatim against a real server in tests/test_e2e_http.py.
"""

from __future__ import annotations

import json

from rocketws.core import rpc
from rocketws.core.spec_examples import spec_example_methods


def call(method: str, params: object) -> object:
    body = json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": 1})
    reply = rpc.dispatch(body, spec_example_methods, None, 10)
    assert reply is not None
    return json.loads(reply)


def test_subtract_binds_by_position_and_by_name() -> None:
    assert call("subtract", [42, 23]) == {"jsonrpc": "2.0", "result": 19, "id": 1}
    assert call("subtract", {"subtrahend": 23, "minuend": 42}) == {"jsonrpc": "2.0", "result": 19, "id": 1}


def test_sum_takes_any_number_of_positional_params() -> None:
    assert call("sum", [1, 2, 4]) == {"jsonrpc": "2.0", "result": 7, "id": 1}
    assert call("sum", []) == {"jsonrpc": "2.0", "result": 0, "id": 1}


def test_get_data_is_fixed_and_update_accepts_anything_positional() -> None:
    assert call("get_data", []) == {"jsonrpc": "2.0", "result": ["hello", 5], "id": 1}
    assert call("update", [1, 2, 3, 4, 5]) == {"jsonrpc": "2.0", "result": None, "id": 1}


def test_subtract_missing_param_is_32602() -> None:
    reply = call("subtract", [42])
    assert isinstance(reply, dict) and reply["error"]["code"] == -32602


def test_every_example_method_describes_itself() -> None:
    described = {m["name"]: m for m in rpc.describe(spec_example_methods)}
    assert set(described) == {"subtract", "sum", "update", "notify_hello", "notify_sum", "get_data"}
    assert [p["name"] for p in described["subtract"]["params"]] == ["minuend", "subtrahend"]
