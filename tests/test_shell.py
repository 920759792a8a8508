"""`manage.py shell` against a real `manage.py runserver`.

Three ways in: prompt_toolkit pipe input (completion, prompting, JSON validation), the
non-interactive modes as real subprocesses (stdin script, -c, exit codes), and a real
pseudo-terminal (pexpect) checked by a real WebSocket subscriber.  Pure helpers are
unit-tested at the end.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pexpect
import pytest
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document
from prompt_toolkit.input import PipeInput, create_pipe_input
from prompt_toolkit.output import DummyOutput
from prompt_toolkit.shortcuts import PromptSession
from prompt_toolkit.validation import ValidationError

from rocketws.client import Client
from rocketws.shell import EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE
from rocketws.shell.commands import Outcome, Shell
from rocketws.shell.interactive import (
    JsonValidator,
    LineValidator,
    ShellCompleter,
    Terminal,
    line_fragments,
)
from rocketws.shell.parsing import (
    JsonInputError,
    default_ws_url,
    json_argument,
    ms_url,
    parse_json,
    take_word,
    ws_url,
)
from rocketws.shell.watch import format_push, parse_push

from .support import ROOT, ServerProcess, free_port, recv_json, subscribe, wait_until, ws_connect

CTRL_C, CTRL_D, CTRL_U, TAB = "\x03", "\x04", "\x15", "\t"


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}/"


# -- interactive, through prompt_toolkit pipe input -------------------------------------


class Console:
    """A Terminal on a pipe input; ``run(script)`` drives it from a second thread.

    The script gets the Terminal and the pipe; it types with ``pipe.send_text`` and waits
    for the terminal's state with ``wait_until``.  Whatever happens, the console ends.
    """

    def __init__(self, shell: Shell, history: Path | None = None) -> None:
        self.shell = shell
        self.history = history

    def run(self, script: Callable[[Terminal, PipeInput], None]) -> None:
        failures: list[BaseException] = []
        with create_pipe_input() as pipe:
            terminal = Terminal(self.shell, pipe, DummyOutput(), self.history)

            def drive() -> None:
                try:
                    script(terminal, pipe)
                except BaseException as exc:  # reported in the test thread below
                    failures.append(exc)
                    pipe.send_text(CTRL_C * 2)
                pipe.send_text(CTRL_U + CTRL_D)

            driver = threading.Thread(target=drive, daemon=True)
            driver.start()
            assert terminal.loop() == 0
            driver.join(10)
        if failures:
            raise failures[0]


@pytest.fixture
def console(server: ServerProcess) -> Iterator[tuple[Console, io.StringIO, io.StringIO]]:
    out, err = io.StringIO(), io.StringIO()
    shell = Shell(server.ms_url, server.ws_url, out, err)
    yield Console(shell), out, err
    shell.client.close()


def results(text: str) -> list[Any]:
    """The JSON values printed one after another in ``text`` (other lines skipped)."""
    decoder, values, index = json.JSONDecoder(), [], 0
    while index < len(text):
        if text[index] in "{[":
            value, index = decoder.raw_decode(text, index)
            values.append(value)
        else:
            index += 1
    return values


def test_shell_prompts_for_missing_emit_arguments_with_default_data(
    server: ServerProcess, console: tuple[Console, io.StringIO, io.StringIO]
) -> None:
    shell_console, out, err = console
    with ws_connect(server.ws_url) as ws:
        subscribe(ws, "pipe-ask")

        def script(terminal: Terminal, pipe: PipeInput) -> None:
            pipe.send_text("emit\r")
            asking_channel: PromptSession[str] = wait_until(lambda: terminal.asking)
            assert asking_channel.message == [("class:prompt", "channel: ")]
            pipe.send_text("pipe-ask\r")
            asking_data: PromptSession[str] = wait_until(
                lambda: terminal.asking if terminal.asking not in (None, asking_channel) else None
            )
            assert asking_data.message == [("class:prompt", "data: ")]
            wait_until(lambda: asking_data.default_buffer.text)
            assert asking_data.default_buffer.text == '{"message": "test"}'
            pipe.send_text("\r")  # accept the default data
            wait_until(lambda: "delivered" in out.getvalue())

        before = time.time()
        shell_console.run(script)
        params = recv_json(ws)["params"]
        received = time.time()
    assert params == {"channel": "pipe-ask", "data": {"message": "test"}, "ts": params["ts"]}
    assert before <= params["ts"] <= received  # stamped by the server during the emit
    assert {"channel": "pipe-ask", "delivered": 1} in results(out.getvalue())
    assert err.getvalue() == ""


def test_shell_completes_command_and_channel_names_from_server(
    server: ServerProcess, console: tuple[Console, io.StringIO, io.StringIO]
) -> None:
    shell_console, out, _ = console
    with ws_connect(server.ws_url) as ws:
        subscribe(ws, "pipe-completion-room")

        def script(terminal: Terminal, pipe: PipeInput) -> None:
            buffer = terminal.session.default_buffer
            pipe.send_text("emi" + TAB)
            wait_until(lambda: buffer.text == "emit")
            pipe.send_text(" pipe-completion-r" + TAB)
            wait_until(lambda: buffer.text == "emit pipe-completion-room")
            pipe.send_text(" 42\r")
            wait_until(lambda: "delivered" in out.getvalue())

        shell_console.run(script)
        push = recv_json(ws)
    assert push["params"]["channel"] == "pipe-completion-room"
    assert push["params"]["data"] == 42


def test_shell_refuses_invalid_json_line_and_points_at_error(
    server: ServerProcess, console: tuple[Console, io.StringIO, io.StringIO]
) -> None:
    shell_console, out, err = console
    with ws_connect(server.ws_url) as ws:
        subscribe(ws, "pipe-json")

        def script(terminal: Terminal, pipe: PipeInput) -> None:
            buffer = terminal.session.default_buffer
            pipe.send_text('emit pipe-json {"a" 1}\r')
            wait_until(lambda: buffer.validation_error is not None)
            error = buffer.validation_error
            assert error is not None
            assert error.message == "invalid JSON at line 1, column 6: Expecting ':' delimiter"
            assert buffer.text == 'emit pipe-json {"a" 1}'  # kept for editing
            assert buffer.cursor_position == len('emit pipe-json {"a" ')  # at the error
            pipe.send_text(":\r")  # typed at the cursor: {"a" :1}
            wait_until(lambda: "delivered" in out.getvalue())

        shell_console.run(script)
        assert recv_json(ws)["params"]["data"] == {"a": 1}
    assert err.getvalue() == ""


def test_shell_data_prompt_reprompts_until_json_is_valid(
    server: ServerProcess, console: tuple[Console, io.StringIO, io.StringIO]
) -> None:
    shell_console, out, err = console
    with ws_connect(server.ws_url) as ws:
        subscribe(ws, "pipe-reask")

        def script(terminal: Terminal, pipe: PipeInput) -> None:
            pipe.send_text("emit pipe-reask\r")
            asking: PromptSession[str] = wait_until(lambda: terminal.asking)
            pipe.send_text(CTRL_U + '{"b": [1,\r')  # replace the default with bad JSON
            error = wait_until(lambda: asking.default_buffer.validation_error)
            assert error.message.startswith("invalid JSON at line 1, column 10:")
            pipe.send_text(" 2]}\r")
            wait_until(lambda: "delivered" in out.getvalue())

        shell_console.run(script)
        assert recv_json(ws)["params"]["data"] == {"b": [1, 2]}
    assert err.getvalue() == ""


def test_shell_ctrl_c_at_argument_prompt_cancels_command(
    server: ServerProcess, console: tuple[Console, io.StringIO, io.StringIO]
) -> None:
    shell_console, out, err = console

    def script(terminal: Terminal, pipe: PipeInput) -> None:
        pipe.send_text("notify_all\r")
        wait_until(lambda: terminal.asking is not None)
        pipe.send_text(CTRL_C)
        wait_until(lambda: "cancelled" in err.getvalue())
        pipe.send_text("ping\r")
        wait_until(lambda: out.getvalue().count('"pong"') == 2)  # greeting + this one

    shell_console.run(script)
    assert "delivered" not in out.getvalue()


def test_shell_toolbar_shows_url_and_reachability(server: ServerProcess) -> None:
    up = Shell(server.ms_url, server.ws_url, io.StringIO(), io.StringIO())
    down = Shell(dead_url(), None, io.StringIO(), io.StringIO())
    toolbars = []
    for shell in (up, down):
        with create_pipe_input() as pipe:
            terminal = Terminal(shell, pipe, DummyOutput())
            assert "not checked" in "".join(fragment[1] for fragment in terminal.toolbar())
            shell.execute("ping")
            toolbars.append("".join(fragment[1] for fragment in terminal.toolbar()))
    assert server.ms_url in toolbars[0] and "● reachable" in toolbars[0]
    assert down.url in toolbars[1] and "✗ unreachable" in toolbars[1]


def test_shell_history_persists_in_file(server: ServerProcess, tmp_path: Path) -> None:
    history = tmp_path / "history"
    out = io.StringIO()
    shell = Shell(server.ms_url, server.ws_url, out, io.StringIO())

    def script(terminal: Terminal, pipe: PipeInput) -> None:
        pipe.send_text("subscribers pipe-history\r")
        wait_until(lambda: out.getvalue().rstrip().endswith("0"))

    Console(shell, history).run(script)
    assert "subscribers pipe-history" in history.read_text()
    # A new console starts with it: Up recalls the line.
    recalled = []

    def recall(terminal: Terminal, pipe: PipeInput) -> None:
        pipe.send_text("\x1b[A")  # Up
        buffer = terminal.session.default_buffer
        wait_until(lambda: buffer.text)
        recalled.append(buffer.text)

    Console(shell, history).run(recall)
    assert recalled == ["subscribers pipe-history"]


def test_shell_greeting_says_unreachable_in_one_line_with_hint() -> None:
    out, err = io.StringIO(), io.StringIO()
    shell = Shell(dead_url(), None, out, err)
    assert shell.greet() is Outcome.UNREACHABLE
    lines = err.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0] == (
        f"cannot reach MessagesSource at {shell.url}: connection refused (the server may not be running)"
    )
    assert lines[1].startswith("hint: start the server with `manage.py runserver`")


# -- non-interactive: stdin script and -c, as real subprocesses -------------------------


def shell_env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "HOME": str(tmp_path), "PROMPT_TOOLKIT_NO_CPR": "1"}


def run_shell(
    tmp_path: Path, *args: str, stdin: str = "", timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "shell", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=shell_env(tmp_path),
    )


def server_args(server: ServerProcess) -> list[str]:
    return [f"--ms-conn={server.ms_url}", f"--ws-conn={server.ws_url}"]


def test_shell_stdin_script_runs_each_line_and_exits_zero(server: ServerProcess, tmp_path: Path) -> None:
    with ws_connect(server.ws_url) as ws:
        subscribe(ws, "script-chat")
        done = run_shell(
            tmp_path,
            *server_args(server),
            stdin='emit script-chat {"a": 1}\n# a comment\n\nsubscribers script-chat\nchannels\n',
        )
        push = recv_json(ws)
    assert (done.returncode, done.stderr) == (EXIT_OK, "")
    printed = results(done.stdout)
    assert printed[0] == {"channel": "script-chat", "delivered": 1}
    assert "script-chat" in printed[1]
    assert done.stdout.splitlines()[4] == "1"  # subscribers, after the 4-line emit result
    assert push["params"]["data"] == {"a": 1}


def test_shell_stdin_script_exits_one_when_a_command_fails(server: ServerProcess, tmp_path: Path) -> None:
    with ws_connect(server.ws_url) as ws:
        done = run_shell(tmp_path, *server_args(server), stdin='emit "" {"a": 1}\nnotify_all [1]\nbogus\n')
        broadcast = recv_json(ws)
    assert done.returncode == EXIT_FAILED
    assert done.stderr.splitlines()[0] == "error -32602: Invalid params"
    assert json.loads("\n".join(done.stderr.splitlines()[1:5])) == {
        "param": "channel",
        "reason": "must not be empty",
    }
    assert "unknown command 'bogus'; type `help` for the list" in done.stderr
    # later commands still ran: the notify_all after the failed emit reached our socket
    assert results(done.stdout)[0]["delivered"] >= 1
    assert (broadcast["method"], broadcast["params"]["data"]) == ("broadcast", [1])


def test_shell_c_runs_one_command_and_exits_zero(server: ServerProcess, tmp_path: Path) -> None:
    done = run_shell(tmp_path, *server_args(server), "-c", "ping")
    assert done.returncode == EXIT_OK
    assert done.stdout.startswith(f'"pong" from {server.ms_url} in ')


def test_shell_c_invalid_json_exits_one_with_position(server: ServerProcess, tmp_path: Path) -> None:
    done = run_shell(tmp_path, *server_args(server), "-c", 'emit chat {"a": tru}')
    assert done.returncode == EXIT_FAILED
    assert done.stderr == "emit: invalid JSON at line 1, column 7: Expecting value\n"


def test_shell_c_missing_argument_exits_one(server: ServerProcess, tmp_path: Path) -> None:
    done = run_shell(tmp_path, *server_args(server), "-c", "emit")
    assert done.returncode == EXIT_FAILED
    assert done.stderr == "emit: missing channel; usage: emit CHANNEL JSON\n"


def test_shell_unreachable_server_exits_three_with_one_line(tmp_path: Path) -> None:
    url = dead_url()
    for args, stdin in ((["-c", "channels"], ""), ([], "ping\n")):
        done = run_shell(tmp_path, f"--ms-conn={url}", *args, stdin=stdin)
        assert done.returncode == EXIT_UNREACHABLE
        assert done.stderr == (
            f"cannot reach MessagesSource at {url}: connection refused (the server may not be running)\n"
        )
        assert done.stdout == ""


def test_shell_bad_url_exits_two(tmp_path: Path) -> None:
    done = run_shell(tmp_path, "--ms-conn=ftp://example.com/", "-c", "ping")
    assert done.returncode == EXIT_USAGE
    assert done.stderr == "shell: not an http(s) URL: 'ftp://example.com/'\n"


def test_shell_watch_prints_push_emitted_while_watching(server: ServerProcess, tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "manage.py"),
            "shell",
            *server_args(server),
            "-c",
            "watch -n 2 script-watch other",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
        env=shell_env(tmp_path),
    )
    try:
        assert proc.stdout is not None
        ready = proc.stdout.readline()
        assert ready == f"watching script-watch, other on {server.ws_url} (Ctrl-C to stop)\n"
        with Client(server.ms_url) as client:
            assert client.emit("script-watch", {"message": "live"})["delivered"] == 1
            client.notify_all("to everyone")
        out, err = proc.communicate(timeout=15)
    finally:
        proc.kill()
    assert proc.returncode == EXIT_OK, err
    lines = out.splitlines()
    assert lines[0].endswith(' script-watch {"message": "live"}')
    assert lines[1].endswith(' * (broadcast) "to everyone"')
    assert lines[2] == "stopped watching after 2 pushes"


def test_shell_watch_reports_server_shutdown_in_one_line(
    start_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    srv = start_server()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "shell", *server_args(srv), "-c", "watch script-shutdown"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
        env=shell_env(tmp_path),
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("watching script-shutdown on ")
        assert srv.terminate() == 0
        _, err = proc.communicate(timeout=15)
    finally:
        proc.kill()
    assert proc.returncode == EXIT_FAILED
    assert err.startswith("the server closed the WebSocket (code 1001")
    assert len(err.splitlines()) == 1


def test_make_shell_runs_manage_shell_with_the_addresses() -> None:
    dry = subprocess.run(
        ["make", "--no-print-directory", "-n", "shell", "MS_CONN=10.0.0.1:1", "WS_CONN=10.0.0.1:2"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
    )
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines()[-1].endswith("manage.py shell --ms-conn=10.0.0.1:1 --ws-conn=10.0.0.1:2")


def test_shell_watch_refused_subscription_exits_one(server: ServerProcess, tmp_path: Path) -> None:
    done = run_shell(tmp_path, *server_args(server), "-c", "watch ''")
    assert done.returncode == EXIT_FAILED
    assert done.stderr.startswith("subscribe '': error -32602: Invalid params")


def test_shell_watch_unreachable_websocket_exits_three(server: ServerProcess, tmp_path: Path) -> None:
    ws = f"ws://127.0.0.1:{free_port()}/"
    done = run_shell(tmp_path, f"--ms-conn={server.ms_url}", f"--ws-conn={ws}", "-c", "watch x")
    assert done.returncode == EXIT_UNREACHABLE
    assert done.stderr.startswith(f"cannot open WebSocket {ws}: connection refused")
    assert len(done.stderr.splitlines()) == 1


# -- a real pseudo-terminal ---------------------------------------------------------------


@pytest.fixture
def pty_shell(server: ServerProcess, tmp_path: Path) -> Iterator[Callable[..., pexpect.spawn]]:
    spawned: list[pexpect.spawn] = []

    def spawn(*args: str) -> pexpect.spawn:
        child = pexpect.spawn(
            sys.executable,
            [str(ROOT / "manage.py"), "shell", *args],
            cwd=str(ROOT),
            env={**shell_env(tmp_path), "TERM": "xterm"},
            dimensions=(30, 160),
            encoding="utf-8",
            timeout=15,
        )
        spawned.append(child)
        return child

    yield spawn
    for child in spawned:
        child.close(force=True)


PROMPT = "rocketws> "


def test_shell_pty_emit_reaches_websocket_subscriber_exactly(
    server: ServerProcess, pty_shell: Callable[..., pexpect.spawn], tmp_path: Path
) -> None:
    with ws_connect(server.ws_url) as ws:
        subscribe(ws, "chat")
        child = pty_shell(*server_args(server))
        child.expect_exact(f'"pong" from {server.ms_url}')
        child.expect_exact(PROMPT)
        before = time.time()
        child.sendline('emit chat {"message": "hi"}')
        child.expect_exact('"delivered": 1')
        push = recv_json(ws)
        received = time.time()
        assert set(push) == {"jsonrpc", "method", "params"}
        assert (push["jsonrpc"], push["method"]) == ("2.0", "message")
        assert set(push["params"]) == {"channel", "data", "ts"}
        assert push["params"]["channel"] == "chat"
        assert push["params"]["data"] == {"message": "hi"}
        assert isinstance(push["params"]["ts"], float)
        assert before <= push["params"]["ts"] <= received
        # Nothing else was pushed in between: the next frame is our marker.
        Client(server.ms_url).emit("chat", "marker")
        assert recv_json(ws)["params"]["data"] == "marker"
        child.expect_exact(PROMPT)
        child.sendcontrol("d")
        child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert 'emit chat {"message": "hi"}' in (tmp_path / ".rocketws_history").read_text()


def test_shell_pty_watch_prints_pushes_until_ctrl_c(
    server: ServerProcess, pty_shell: Callable[..., pexpect.spawn]
) -> None:
    child = pty_shell(*server_args(server))
    child.expect_exact(PROMPT)
    child.sendline("watch pty-watch")
    child.expect_exact(f"watching pty-watch on {server.ws_url} (Ctrl-C to stop)")
    with Client(server.ms_url) as client:
        assert client.emit("pty-watch", {"n": 1})["delivered"] == 1
        child.expect_exact(' pty-watch {"n": 1}')
        assert client.emit("pty-watch", {"n": 2})["delivered"] == 1
        child.expect_exact(' pty-watch {"n": 2}')
        child.sendintr()
        child.expect_exact("stopped watching after 2 pushes")
        child.expect_exact(PROMPT)
        wait_until(lambda: client.total_subscribers("pty-watch") == 0)
    child.sendline("exit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_shell_pty_unreachable_server_still_opens_prompt(
    server: ServerProcess, pty_shell: Callable[..., pexpect.spawn]
) -> None:
    url = dead_url()
    child = pty_shell(f"--ms-conn={url}")
    child.expect_exact(f"cannot reach MessagesSource at {url}: connection refused")
    child.expect_exact("hint: start the server")
    child.expect_exact(PROMPT)
    child.sendline(f"connect {server.ms_url} {server.ws_url}")
    child.expect_exact(f'"pong" from {server.ms_url}')
    child.expect_exact(PROMPT)
    child.sendcontrol("d")
    child.expect(pexpect.EOF)
    assert "Traceback" not in (child.before or "")
    child.close()
    assert child.exitstatus == 0


# -- pure helpers -------------------------------------------------------------------------


def test_parse_json_reports_line_and_column() -> None:
    with pytest.raises(JsonInputError) as caught:
        parse_json('{\n  "a": 1,\n  "b" 2\n}')
    assert (caught.value.line, caught.value.column, caught.value.offset) == (3, 7, 18)
    assert str(caught.value) == "invalid JSON at line 3, column 7: Expecting ':' delimiter"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('chat {"a": 1}', ("chat", '{"a": 1}', 5)),
        ("  'my room'   1", ("my room", "1", 14)),
        ("chat", ("chat", "", 4)),
        ("", (None, "", 0)),
        ("'' 1", ("", "1", 3)),
    ],
)
def test_take_word_splits_first_shell_word(text: str, expected: tuple[str | None, str, int]) -> None:
    assert take_word(text) == expected


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('emit chat {"a": 1}', ('{"a": 1}', 10)),
        ('  emit  "a b"  [1]', ("[1]", 15)),
        ("notify_all 5", ("5", 11)),
        ("emit chat", None),
        ("ping", None),
    ],
)
def test_json_argument_locates_data(line: str, expected: tuple[str, int] | None) -> None:
    assert json_argument(line) == expected


@pytest.mark.parametrize(
    ("given", "ms", "ws"),
    [
        ("localhost:1", "http://localhost:1/", "ws://localhost:58000/"),
        (":59999", "http://127.0.0.1:59999/", "ws://127.0.0.1:58000/"),
        ("0.0.0.0:59999", "http://127.0.0.1:59999/", "ws://127.0.0.1:58000/"),
        ("https://push.example.com/rpc", "https://push.example.com/rpc", "ws://push.example.com:58000/"),
    ],
)
def test_ms_url_normalizes_and_ws_url_defaults_to_same_host(given: str, ms: str, ws: str) -> None:
    assert ms_url(given) == ms
    assert default_ws_url(ms) == ws


def test_ws_url_accepts_host_port_and_http_urls() -> None:
    assert ws_url("0.0.0.0:58000") == "ws://127.0.0.1:58000/"
    assert ws_url("http://h:1/ws") == "ws://h:1/ws"
    assert ws_url("wss://h/") == "wss://h/"


def test_line_validator_points_at_json_error() -> None:
    with pytest.raises(ValidationError) as caught:
        LineValidator().validate(Document("emit chat [1, }"))
    assert caught.value.cursor_position == len("emit chat [1, ")
    LineValidator().validate(Document("emit chat [1]"))
    LineValidator().validate(Document("emit chat"))  # data will be asked for


def test_json_validator_accepts_empty_as_default() -> None:
    JsonValidator().validate(Document(""))
    with pytest.raises(ValidationError):
        JsonValidator().validate(Document("{"))


def completions(line: str, channels: list[str]) -> list[str]:
    completer = ShellCompleter(lambda: channels)
    return [c.text for c in completer.get_completions(Document(line), CompleteEvent())]


def test_completer_offers_commands_channels_and_default_data() -> None:
    rooms = ["chat", "chess club", "news"]
    assert completions("e", rooms) == ["emit", "exit"]
    assert completions("help no", rooms) == ["notify_all"]
    assert completions("emit ch", rooms) == ["chat", "'chess club'"]
    assert completions("subscribers n", rooms) == ["news"]
    assert completions("watch chat n", rooms) == ["news"]
    assert completions("watch -n ", rooms) == []
    assert completions("emit chat ", rooms) == ['{"message": "test"}']
    assert completions("ping ", rooms) == []


def test_lexer_styles_command_channel_and_json() -> None:
    fragments = line_fragments('emit chat {"a": true}')
    styled = [(fragment[0], fragment[1]) for fragment in fragments if fragment[1].strip()]
    assert styled[:2] == [("class:command", "emit"), ("class:channel", " chat ")]
    assert ("class:json.key", '"a"') in styled
    assert ("class:json.keyword", "true") in styled
    assert line_fragments("bogus")[1] == ("class:unknown", "bogus")


def test_push_parsing_and_formatting() -> None:
    push = parse_push(
        '{"jsonrpc":"2.0","method":"message","params":{"channel":"c","data":{"x":"é"},"ts":0.5}}'
    )
    assert push is not None and format_push(push).endswith(' c {"x": "é"}')
    assert parse_push('{"jsonrpc":"2.0","result":"pong","id":1}') is None
    assert parse_push("not json") is None


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("watch -n 0 x", "watch: -n needs a positive count, got '0'"),
        ("ping extra", "ping: takes no arguments, got 'extra'"),
        ("subscribers a b", "subscribers: unexpected 'b'; usage: subscribers [CHANNEL]"),
        ("emit 'open 1", 'emit: cannot read "\'open 1": No closing quotation'),
        ("help nope", "help: no command or server method 'nope'; type `help` for the list"),
        ("connect a b c", "connect: too many arguments; usage: connect URL [WS_URL]"),
        ("connect ftp://x", "connect: not an http(s) URL: 'ftp://x'"),
    ],
)
def test_shell_bad_input_fails_with_one_line(line: str, error: str) -> None:
    err = io.StringIO()
    shell = Shell(dead_url(), None, io.StringIO(), err)
    assert shell.execute(line) is Outcome.FAILED
    assert err.getvalue() == error + "\n"


# -- server methods from rpc.discover (issue 12) ------------------------------------------


def test_shell_completes_server_methods_from_discover(
    server: ServerProcess, console: tuple[Console, io.StringIO, io.StringIO]
) -> None:
    shell_console, out, _ = console

    def script(terminal: Terminal, pipe: PipeInput) -> None:
        buffer = terminal.session.default_buffer
        pipe.send_text("call total_su" + TAB)  # a name only the server's rpc.discover lists
        wait_until(lambda: buffer.text == "call total_subscribers")
        pipe.send_text("\r")
        wait_until(lambda: out.getvalue().endswith("\n0\n"))
        pipe.send_text("help rpc.disc" + TAB)
        wait_until(lambda: buffer.text == "help rpc.discover")
        pipe.send_text("\r")
        wait_until(lambda: "OpenRPC" in out.getvalue())

    shell_console.run(script)
    assert "rpc.discover  [backend method" in out.getvalue()


def test_shell_help_explains_any_server_method(server: ServerProcess, tmp_path: Path) -> None:
    done = run_shell(tmp_path, *server_args(server), "-c", "help disconnect")
    assert done.returncode == EXIT_OK, done.stderr
    text = done.stdout
    assert text.startswith("disconnect  [backend method")
    assert "user (required)" in text and "code (optional)" in text and '"maximum": 4999' in text
    assert "-32002 Broker unavailable" in text
    client = run_shell(tmp_path, *server_args(server), "-c", "help send_data")
    assert client.returncode == EXIT_OK and "send_data  [WebSocket client method]" in client.stdout
    listing = run_shell(tmp_path, *server_args(server), "-c", "help")
    assert "backend methods (call METHOD PARAMS): " in listing.stdout and " info " in listing.stdout
    unknown = run_shell(tmp_path, *server_args(server), "-c", "help nothing.here")
    assert (
        unknown.returncode == EXIT_FAILED and "no command or server method 'nothing.here'" in unknown.stderr
    )


def test_shell_help_explains_proxied_methods(
    start_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    routes = [
        {"pattern": "time.now", "handler": "tests.proxy_app:now"},
        {"pattern": "billing.*", "url": f"http://127.0.0.1:{free_port()}/rpc"},
    ]
    srv = start_server(ROCKETWS_RPC_PROXY_ROUTES=json.dumps(routes))
    by_name = run_shell(tmp_path, *server_args(srv), "-c", "help billing.charge")
    assert by_name.returncode == EXIT_OK, by_name.stderr
    assert by_name.stdout.startswith("billing.*  [proxied to the application, route 'billing.*'")
    assert "call it through rpc" in by_name.stdout and "-32042 Application timeout" in by_name.stdout
    exact = run_shell(tmp_path, *server_args(srv), "-c", "help time.now")
    assert exact.returncode == EXIT_OK and exact.stdout.startswith("time.now  [proxied")
    listing = run_shell(tmp_path, *server_args(srv), "-c", "help")
    client_line = next(line for line in listing.stdout.splitlines() if line.startswith("WebSocket client"))
    assert client_line.endswith(" time.now billing.*")
    shell = Shell(srv.ms_url, srv.ws_url, io.StringIO(), io.StringIO())
    assert {"info", "send_data", "time.now", "billing.*"} <= set(shell.described_names())
    assert "billing.*" not in shell.method_names()  # `call` runs backend methods only
    unrouted = run_shell(tmp_path, *server_args(srv), "-c", "help shipping.track")
    assert unrouted.returncode == EXIT_FAILED and "'shipping.track'" in unrouted.stderr


def test_shell_call_runs_any_backend_method(server: ServerProcess, tmp_path: Path) -> None:
    done = run_shell(tmp_path, *server_args(server), "-c", "call info")
    assert done.returncode == EXIT_OK, done.stderr
    assert results(done.stdout)[0]["node"]["broker"]["kind"] == "memory"
    named = run_shell(tmp_path, *server_args(server), "-c", 'call total_subscribers {"channel": "x"}')
    assert named.returncode == EXIT_OK and named.stdout.strip() == "0"
    bad = run_shell(tmp_path, *server_args(server), "-c", "call total_subscribers 5")
    assert bad.returncode == EXIT_FAILED and "PARAMS must be a JSON array or object" in bad.stderr


def test_completer_offers_server_methods_after_call_and_help() -> None:
    completer = ShellCompleter(lambda: [], lambda: ["emit", "info", "rpc.discover"])

    def offered(line: str) -> list[str]:
        return [c.text for c in completer.get_completions(Document(line), CompleteEvent())]

    assert offered("call i") == ["info"]
    assert offered("call ") == ["emit", "info", "rpc.discover"]
    assert offered("help rpc") == ["rpc.discover"]
    assert offered("help e") == ["emit", "exit"]  # the command once, not again as a method
    described = ShellCompleter(lambda: [], lambda: ["emit"], lambda: ["emit", "send_data", "billing.*"])
    assert [c.text for c in described.get_completions(Document("help bi"), CompleteEvent())] == ["billing.*"]
    assert [c.text for c in described.get_completions(Document("call "), CompleteEvent())] == ["emit"]
