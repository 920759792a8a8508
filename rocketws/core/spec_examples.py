"""The example methods of the JSON-RPC 2.0 specification, section 7.

Off by default; ``RPC["SPEC_EXAMPLE_METHODS"] = True`` (or
``ROCKETWS_SPEC_EXAMPLE_METHODS=1``) adds them to the MessagesSource so that every
example of the spec can be run verbatim against a live server.
"""

from __future__ import annotations

from typing import Any

from rocketws.core.rpc import Methods, rpc_method


@rpc_method
def subtract(_ctx: Any, minuend: float, subtrahend: float) -> float:
    return minuend - subtrahend


@rpc_method
def sum_(_ctx: Any, *numbers: float) -> float:
    return sum(numbers)


@rpc_method
def accept_any(_ctx: Any, *args: Any, **kwargs: Any) -> None:
    return None


@rpc_method
def get_data(_ctx: Any) -> list[Any]:
    return ["hello", 5]


spec_example_methods: Methods = {
    "subtract": subtract,
    "sum": sum_,
    "update": accept_any,
    "notify_hello": accept_any,
    "notify_sum": sum_,
    "get_data": get_data,
}
