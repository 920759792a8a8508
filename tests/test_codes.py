"""Unit tests of the wire codes (rocketws/core/codes.py)."""

from __future__ import annotations

from rocketws.core.codes import RPC_MESSAGES, CloseCode, RpcCode


def test_rpc_codes_are_the_spec_values_and_the_application_range() -> None:
    """JSON-RPC 2.0 section 5.1; application errors lie in -32000..-32099."""
    assert (
        RpcCode.PARSE_ERROR,
        RpcCode.INVALID_REQUEST,
        RpcCode.METHOD_NOT_FOUND,
        RpcCode.INVALID_PARAMS,
        RpcCode.INTERNAL_ERROR,
    ) == (-32700, -32600, -32601, -32602, -32603)
    spec = {-32700, -32600, -32601, -32602, -32603}
    assert all(-32099 <= code <= -32000 for code in RpcCode if code not in spec)


def test_every_rpc_code_has_one_distinct_message() -> None:
    assert set(RPC_MESSAGES) == set(RpcCode)
    assert len(set(RPC_MESSAGES.values())) == len(RpcCode)
    assert RPC_MESSAGES[RpcCode.PARSE_ERROR] == "Parse error"
    assert RPC_MESSAGES[RpcCode.INVALID_REQUEST] == "Invalid Request"


def test_close_codes_are_sendable() -> None:
    """RFC 6455 section 7.4: 1005/1006/1015 must never be sent; private use is 4000-4999."""
    assert not {1005, 1006, 1015} & set(CloseCode)
    assert all(1000 <= code <= 1011 or 4000 <= code <= 4999 for code in CloseCode)
    assert (int(CloseCode.SLOW_CONSUMER), int(CloseCode.GOING_AWAY)) == (4008, 1001)
