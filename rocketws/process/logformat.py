"""``LOG_FORMAT = "json"``: one JSON object per line, for log shippers.

Each line holds ``ts`` (UTC, ISO 8601 with milliseconds), ``level``, ``logger``,
``message`` (the formatted message), ``pid``, ``worker`` (with ``--workers``), and
``exception`` (the traceback text) when there is one; values a caller passed with
``extra=`` are kept under their own names.  The plain format stays the default.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from typing import Any

import orjson

__all__ = ["JsonFormatter", "apply_log_format"]

_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON (no newline inside: tracebacks are escaped)."""

    def __init__(self) -> None:
        super().__init__()
        self._worker = os.environ.get("ROCKETWS_WORKER_ID")

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        if self._worker:
            line["worker"] = self._worker
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in line:
                line[key] = value
        return orjson.dumps(line, default=str).decode()


def apply_log_format(log_format: str) -> None:
    """With ``json``, give every configured handler the JSON formatter (after
    ``dictConfig``: LOGGING still decides handlers and levels)."""
    if log_format != "json":
        return
    formatter = JsonFormatter()
    known = logging.root.manager.loggerDict.values()
    for logger in [logging.root, *(v for v in known if isinstance(v, logging.Logger))]:
        for handler in logger.handlers:
            handler.setFormatter(formatter)
