"""Unit tests of the exception tree and the wire codes it carries (rocketws/core/exceptions.py)."""

from __future__ import annotations

import pytest

from rocketws.core import exceptions as exc
from rocketws.core.codes import CloseCode, RpcCode

# -- the tree ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "parent"),
    [
        (exc.ConfigError, exc.RocketWSError),
        (exc.RpcError, exc.RocketWSError),
        (exc.InvalidParams, exc.RpcError),
        (exc.NotSubscribed, exc.RpcError),
        (exc.BrokerUnavailable, exc.RpcError),
        (exc.LimitExceeded, exc.RpcError),
        (exc.WebSocketClosing, exc.RocketWSError),
        (exc.PeerClosed, exc.WebSocketClosing),
        (exc.ProtocolViolation, exc.WebSocketClosing),
    ],
)
def test_exception_tree_has_one_root_and_no_oserror(cls: type[Exception], parent: type[Exception]) -> None:
    assert issubclass(cls, parent) and issubclass(cls, exc.RocketWSError)
    assert not issubclass(cls, OSError)


# -- RpcError: code, message, data, __str__ ---------------------------------------------


@pytest.mark.parametrize(
    ("cls", "code", "message"),
    [
        (exc.RpcError, -32603, "Internal error"),
        (exc.InvalidParams, -32602, "Invalid params"),
        (exc.NotSubscribed, -32001, "Not subscribed"),
        (exc.BrokerUnavailable, -32002, "Broker unavailable"),
        (exc.LimitExceeded, -32003, "Limit exceeded"),
    ],
)
def test_rpc_error_carries_its_code_message_and_data(
    cls: type[exc.RpcError], code: int, message: str
) -> None:
    err = cls({"reason": "why"})
    assert (err.code, err.message, err.data) == (code, message, {"reason": "why"})
    assert str(err) == f"{code} {message}: {{'reason': 'why'}}"


def test_rpc_error_code_can_be_given_per_instance() -> None:
    err = exc.RpcError(code=RpcCode.REQUEST_TOO_LARGE)
    assert err.code == -32004 and err.message == "Request too large" and err.data is None
    assert str(err) == "-32004 Request too large: None"
    assert exc.RpcError.code == -32603  # the class default is untouched


def test_rpc_error_unknown_code_is_a_server_error() -> None:
    assert exc.RpcError(code=-32050).message == "Server error"


# -- WebSocketClosing: close_code, reason, __str__ --------------------------------------


def test_websocket_closing_defaults_and_overrides() -> None:
    assert (exc.WebSocketClosing().close_code, exc.WebSocketClosing().reason) == (1000, "")
    assert exc.PeerClosed("bye", 4321).close_code == 4321
    violation = exc.ProtocolViolation("unmasked frame")
    assert violation.close_code == CloseCode.PROTOCOL_ERROR
    assert str(violation) == "close 1002: unmasked frame"
    big = exc.ProtocolViolation("message over 65536 bytes", CloseCode.MESSAGE_TOO_BIG)
    assert str(big) == "close 1009: message over 65536 bytes"
    assert exc.ProtocolViolation.close_code == 1002


# -- ConfigError ------------------------------------------------------------------------


def test_config_error_names_the_setting_value_and_reason() -> None:
    err = exc.ConfigError("WS_CONN", "nowhere:x", "port must be a number")
    assert (err.name, err.value, err.reason) == ("WS_CONN", "nowhere:x", "port must be a number")
    assert str(err) == "invalid WS_CONN='nowhere:x': port must be a number"
