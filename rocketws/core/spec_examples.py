"""The example methods of the JSON-RPC 2.0 specification, section 7.

Off by default; ``RPC["SPEC_EXAMPLE_METHODS"] = True`` (or
``ROCKETWS_SPEC_EXAMPLE_METHODS=1``) adds them to the MessagesSource so that every
example of the spec can be run verbatim against a live server.
"""

from __future__ import annotations

from typing import Any

from rocketws.core.rpc import Method, Methods, Param, table

_NUMBER = {"type": "number"}


def subtract(_ctx: object, minuend: float, subtrahend: float) -> float:
    return minuend - subtrahend


def sum_(_ctx: object, *numbers: float) -> float:
    return sum(numbers)


def accept_any(_ctx: object, *args: Any) -> None:
    return None


def get_data(_ctx: object) -> list[Any]:
    return ["hello", 5]


_SUM = Param("numbers", _NUMBER, doc="the numbers to add")
_ANY = Param("args", doc="ignored")

spec_example_methods: Methods = table(
    Method(
        "subtract",
        subtract,
        (
            Param("minuend", _NUMBER, doc="the number to subtract from"),
            Param("subtrahend", _NUMBER, doc="the number subtracted"),
        ),
        "minuend - subtrahend.",
        _NUMBER,
    ),
    Method("sum", sum_, (), "The sum of the numbers.", _NUMBER, rest=_SUM),
    Method("update", accept_any, (), "Accepts any positional params.", {"type": "null"}, rest=_ANY),
    Method("notify_hello", accept_any, (), "Accepts any positional params.", {"type": "null"}, rest=_ANY),
    Method("notify_sum", sum_, (), "The sum of the numbers.", _NUMBER, rest=_SUM),
    Method("get_data", get_data, (), 'Always ["hello", 5].', {"type": "array"}),
)
