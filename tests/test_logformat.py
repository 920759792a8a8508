"""LOG_FORMAT json (rocketws/process/logformat.py): one JSON object per line."""

from __future__ import annotations

import json
import logging
from typing import Any

from rocketws.process.logformat import JsonFormatter

from .redis_fixtures import RedisServer
from .support import ServerProcess


def test_json_formatter_keeps_message_extra_and_traceback_on_one_line() -> None:
    formatter = JsonFormatter()
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        record = logging.LogRecord("rocketws.x", logging.ERROR, __file__, 1, "failed %s", ("here",), None)
        import sys

        record.exc_info = sys.exc_info()
    record.channel = "room"
    line = formatter.format(record)
    assert "\n" not in line
    parsed = json.loads(line)
    assert (
        parsed["message"] == "failed here" and parsed["level"] == "ERROR" and parsed["logger"] == "rocketws.x"
    )
    assert parsed["channel"] == "room" and "ValueError: boom" in parsed["exception"]
    assert parsed["ts"].endswith("+00:00")


def _lines(srv: ServerProcess) -> list[dict[str, Any]]:
    return [json.loads(line) for line in srv.log().splitlines() if line.strip()]


def test_server_logs_one_json_object_per_line(start_server: Any) -> None:
    srv: ServerProcess = start_server(ROCKETWS_LOG_FORMAT="json")
    assert srv.post(b"not json").status_code == 200  # a client mistake: logged at most INFO
    srv.terminate()
    lines = _lines(srv)  # every line parses
    messages = [line["message"] for line in lines]
    assert any(m.startswith("websocket listening on") for m in messages)
    assert messages[-1] == "stopped"
    assert all({"ts", "level", "logger", "message", "pid"} <= set(line) for line in lines)


def test_workers_log_json_lines_with_their_worker(redis_server: RedisServer) -> None:
    srv = ServerProcess(
        env={"ROCKETWS_LOG_FORMAT": "json"},
        args=[
            "--ws-conn=127.0.0.1:0",
            "--ms-conn=127.0.0.1:0",
            "--workers=2",
            f"--broker={redis_server.url}",
        ],
    ).start()
    try:
        srv.wait_log(r"all 2 workers ready", timeout=30)
    finally:
        srv.stop()
    srv.assert_no_traceback()
    lines = _lines(srv)
    assert {line.get("worker") for line in lines} >= {"1", "2"}
    assert any(line["message"].startswith("all 2 workers ready") for line in lines)
