"""The shell's commands: parse a line, call the MessagesSource, print readable results.

No terminal code lives here: arguments that are missing are asked for through the ``ask``
callback (None in script mode, where a missing argument is an error).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, TextIO

from rocketws.client import BadResponse, Client, ServerRpcError, TransportError
from rocketws.shell.discover import BACKEND, CLIENT, Catalog, describe_method, discover_over_websocket
from rocketws.shell.parsing import (
    ALIASES,
    DEFAULT_DATA,
    DEFAULT_WS_PORT,
    InputError,
    JsonInputError,
    default_ws_url,
    format_json,
    ms_url,
    parse_json,
    split_command,
    split_words,
    take_word,
    ws_url,
)
from rocketws.shell.watch import WatchError, watch

__all__ = ["COMMANDS", "Cancelled", "Command", "Outcome", "Question", "Shell"]

CHANNEL_CACHE_SECONDS = 2.0


class Outcome(Enum):
    """What running one command line came to."""

    OK = "ok"
    FAILED = "failed"  # bad input, or the server answered with an error
    UNREACHABLE = "unreachable"  # the server could not be reached
    EXIT = "exit"  # the user asked to leave


class Cancelled(Exception):
    """The user pressed Ctrl-C while being asked for an argument."""


@dataclass(frozen=True)
class Question:
    """A missing argument to ask for: ``kind`` is "channel", "json", "url" or "text"."""

    label: str
    kind: str = "text"
    default: str = ""


Ask = Callable[[Question], str]


@dataclass(frozen=True)
class Command:
    name: str
    usage: str
    summary: str
    details: str = ""


COMMANDS: dict[str, Command] = {
    c.name: c
    for c in (
        Command(
            "emit",
            "emit CHANNEL JSON",
            "push JSON to the subscribers of CHANNEL",
            'Example: emit chat {"message": "hi"}\nQuote a CHANNEL that has spaces: '
            "emit 'my room' 1\nWithout JSON, asks for it (default " + DEFAULT_DATA + ").",
        ),
        Command(
            "notify_all",
            "notify_all JSON",
            "push JSON to every open connection",
            'Example: notify_all {"maintenance": "in 5 minutes"}',
        ),
        Command("channels", "channels", "list the channels that have subscribers"),
        Command(
            "subscribers",
            "subscribers [CHANNEL]",
            "count the subscribers of CHANNEL, or all open connections",
        ),
        Command("ping", "ping", "check that the server answers"),
        Command(
            "call",
            "call METHOD [PARAMS]",
            "call any backend method (Tab completes the names rpc.discover lists)",
            "PARAMS is a JSON array (by position) or object (by name), e.g.\n"
            'call disconnect {"user": "alice", "code": 4504}\n'
            "`help METHOD` shows what a server method takes.",
        ),
        Command(
            "connect",
            "connect URL [WS_URL]",
            "use another server",
            "URL is the MessagesSource (http://host:port/path or host:port); WS_URL the\n"
            "WebSocket endpoint used by watch (default: the same host, the configured\n"
            f"WebSocket port, {DEFAULT_WS_PORT} unless settings say otherwise).",
        ),
        Command(
            "watch",
            "watch [-n COUNT] CHANNEL...",
            "print pushes to the CHANNELs live until Ctrl-C",
            "Opens a WebSocket, subscribes and prints each push (and broadcasts) as\n"
            "TIME CHANNEL JSON.  -n COUNT stops after COUNT pushes; put -- before\n"
            "channels that start with -.",
        ),
        Command("help", "help [COMMAND|METHOD]", "list the commands, or explain one or a server method"),
        Command("exit", "exit", "leave the shell (also quit, Ctrl-D)"),
    )
}


class Shell:
    """Runs command lines against one MessagesSource and prints the results.

    Results go to ``out`` as readable JSON, errors to ``err`` as one line (plus the error
    data).  ``reachable`` is None until the first request, then whether the last request
    reached the server.
    """

    def __init__(
        self,
        ms: str,
        ws: str | None,
        out: TextIO,
        err: TextIO,
        ask: Ask | None = None,
        timeout: float = 5.0,
        api_key: str | None = None,
        ws_port: int = DEFAULT_WS_PORT,
    ) -> None:
        self.out, self.err, self.ask = out, err, ask
        self.ws_port = ws_port
        self.timeout, self.api_key = timeout, api_key
        self.client = Client(ms_url(ms), timeout=timeout, api_key=api_key)
        self.ws_url = ws_url(ws) if ws else default_ws_url(self.client.url, ws_port)
        self.reachable: bool | None = None
        self._channels: tuple[float, list[str]] | None = None
        self.catalog = Catalog(
            lambda: self.client.call("rpc.discover"),
            lambda: discover_over_websocket(self.ws_url, self.timeout),
        )

    @property
    def url(self) -> str:
        return self.client.url

    # -- running lines ------------------------------------------------------------------

    def execute(self, line: str) -> Outcome:
        """Run one command line; never raises for user or server errors."""
        name, rest = split_command(line)
        if not name or name.startswith("#"):
            return Outcome.OK
        name = ALIASES.get(name, name)
        handler = getattr(self, f"_cmd_{name}", None) if name in COMMANDS else None
        if handler is None:
            return self._fail(f"unknown command {name!r}; type `help` for the list")
        try:
            outcome: Outcome = handler(rest)
            return outcome
        except Cancelled:
            self._error("cancelled")
            return Outcome.FAILED
        except InputError as exc:
            return self._fail(f"{name}: {exc}")
        except ServerRpcError as exc:
            self.reachable = True
            self._error(f"error {exc.code}: {exc.message}")
            if exc.data is not None:
                self._error(format_json(exc.data))
            return Outcome.FAILED
        except TransportError as exc:
            self.reachable = False
            self._error(str(exc))
            return Outcome.FAILED if isinstance(exc, BadResponse) else Outcome.UNREACHABLE
        except WatchError as exc:
            self._error(str(exc))
            return Outcome.UNREACHABLE if exc.unreachable else Outcome.FAILED

    def greet(self) -> Outcome:
        """Ping the server and say whether it answered (interactive start)."""
        self.out.write(f"RocketWS shell: MessagesSource {self.url}, WebSocket {self.ws_url}\n")
        outcome = self.execute("ping")
        if outcome is Outcome.UNREACHABLE:
            self._error(
                "hint: start the server with `manage.py runserver`, then type `ping` to "
                "retry, or `connect HOST:PORT` to use another server"
            )
        self.out.write("Type `help` for the commands, Tab to complete, Ctrl-D to leave.\n")
        self.out.flush()
        return outcome

    def channel_names(self) -> list[str]:
        """Channels that have subscribers (cached briefly; [] when unreachable)."""
        now = time.monotonic()
        if self._channels is not None and now - self._channels[0] < CHANNEL_CACHE_SECONDS:
            return self._channels[1]
        try:
            names = self.client.available_channels()
            self.reachable = True
        except TransportError:
            self.reachable = False
            names = []
        except ServerRpcError:
            names = []
        self._channels = (now, [n for n in names if isinstance(n, str)])
        return self._channels[1]

    # -- commands -----------------------------------------------------------------------

    def _cmd_emit(self, rest: str) -> Outcome:
        channel, data_text, _ = take_word(rest)
        if channel is None:
            channel = self._ask_required(Question("channel", "channel"), "emit")
        data = self._data(data_text, "emit")
        return self._show(self._call(self.client.emit, channel, data))

    def _cmd_notify_all(self, rest: str) -> Outcome:
        return self._show(self._call(self.client.notify_all, self._data(rest, "notify_all")))

    def _cmd_channels(self, rest: str) -> Outcome:
        self._no_args(rest)
        return self._show(self._call(self.client.available_channels))

    def _cmd_subscribers(self, rest: str) -> Outcome:
        channel, extra, _ = take_word(rest)
        if extra:
            raise InputError(f"unexpected {extra!r}; usage: {COMMANDS['subscribers'].usage}")
        return self._show(self._call(self.client.total_subscribers, channel))

    def _cmd_ping(self, rest: str) -> Outcome:
        self._no_args(rest)
        started = time.perf_counter()
        answer = self._call(self.client.ping)
        elapsed = (time.perf_counter() - started) * 1000
        self.out.write(f"{format_json(answer)} from {self.url} in {elapsed:.1f} ms\n")
        self.out.flush()
        return Outcome.OK

    def _cmd_connect(self, rest: str) -> Outcome:
        words = split_words(rest)
        if len(words) > 2:
            raise InputError(f"too many arguments; usage: {COMMANDS['connect'].usage}")
        if not words:
            words = [self._ask_required(Question("MessagesSource URL", "url", self.url), "connect")]
        new_ms = ms_url(words[0])
        new_ws = ws_url(words[1]) if len(words) == 2 else default_ws_url(new_ms, self.ws_port)
        self.client.close()
        self.client = Client(new_ms, timeout=self.timeout, api_key=self.api_key)
        self.ws_url, self.reachable, self._channels = new_ws, None, None
        self.catalog.reset()
        self.out.write(f"MessagesSource {self.url}, WebSocket {self.ws_url}\n")
        return self._cmd_ping("")

    def _cmd_watch(self, rest: str) -> Outcome:
        words = split_words(rest)
        count: int | None = None
        if words and (words[0] == "-n" or re.fullmatch(r"-n\d+", words[0])):
            option = words.pop(0)
            value = option[2:] or (words.pop(0) if words else "")
            if not value.isdigit() or int(value) < 1:
                raise InputError(f"-n needs a positive count, got {value!r}")
            count = int(value)
        if words[:1] == ["--"]:  # the channels that follow may start with "-"
            words.pop(0)
        if not words:
            answer = self._ask_required(Question("channels (space-separated)", "channel"), "watch")
            words = split_words(answer)
            if not words:
                raise InputError("no channel given")

        def report(text: str) -> None:
            self.out.write(text + "\n")
            self.out.flush()

        seen = watch(self.ws_url, words, report, count=count, open_timeout=self.timeout)
        report(f"stopped watching after {seen} push{'es' if seen != 1 else ''}")
        return Outcome.OK

    def _cmd_call(self, rest: str) -> Outcome:
        method, params_text, _ = take_word(rest)
        if method is None:
            method = self._ask_required(Question("method"), "call")
        params = parse_json(params_text) if params_text else None
        if params is not None and not isinstance(params, (list, dict)):
            raise InputError("PARAMS must be a JSON array or object")
        return self._show(self._call(self.client.call, method, params))

    def method_names(self) -> list[str]:
        """Backend method names (``rpc.discover``; [] when unknown), for completion."""
        return self.catalog.names(BACKEND)

    def described_names(self) -> list[str]:
        """Every method name both endpoints describe (backend, client, proxied patterns;
        each once), for ``help`` completion."""
        return list(dict.fromkeys(self.catalog.names(BACKEND) + self.catalog.names(CLIENT)))

    def _cmd_help(self, rest: str) -> Outcome:
        name = ALIASES.get(rest.strip(), rest.strip())
        if name:
            command = COMMANDS.get(name)
            if command is None:
                found = self.catalog.find(name)
                if not found:
                    raise InputError(f"no command or server method {name!r}; type `help` for the list")
                text = "".join(describe_method(endpoint, method) for endpoint, method in found)
            else:
                text = f"{command.usage}\n  {command.summary}\n"
                if command.details:
                    text += "".join(f"  {line}\n" for line in command.details.splitlines())
                if name not in ("help", "exit", "connect", "watch", "channels", "subscribers", "call"):
                    text += "".join("\n" + describe_method(e, m) for e, m in self.catalog.find(name))
        else:
            width = max(len(c.usage) for c in COMMANDS.values())
            text = "".join(f"{c.usage:<{width}}  {c.summary}\n" for c in COMMANDS.values())
            backend, client = self.catalog.names(BACKEND), self.catalog.names(CLIENT)
            if backend:
                text += "\nbackend methods (call METHOD PARAMS): " + " ".join(backend) + "\n"
            if client:
                text += "WebSocket client methods: " + " ".join(client) + "\n"
            if backend or client:
                text += "`help METHOD` explains one.\n"
        self.out.write(text)
        self.out.flush()
        return Outcome.OK

    def _cmd_exit(self, rest: str) -> Outcome:
        return Outcome.EXIT

    # -- helpers ------------------------------------------------------------------------

    def _call(self, method: Callable[..., Any], *args: Any) -> Any:
        result = method(*args)
        self.reachable = True
        return result

    def _show(self, result: Any) -> Outcome:
        self.out.write(format_json(result) + "\n")
        self.out.flush()
        return Outcome.OK

    def _data(self, text: str, command: str) -> Any:
        """Parse JSON data; asks again (showing the error) when interactive."""
        if not text:
            text = self._ask_required(Question("data", "json", DEFAULT_DATA), command)
        while True:
            try:
                return parse_json(text)
            except JsonInputError as exc:
                if self.ask is None:
                    raise
                self._error(f"{command}: {exc}")
                text = self.ask(Question("data", "json", text))

    def _ask_required(self, question: Question, command: str) -> str:
        if self.ask is None:
            raise InputError(f"missing {question.label}; usage: {COMMANDS[command].usage}")
        answer = self.ask(question).strip() or question.default
        if not answer:
            raise InputError(f"no {question.label} given")
        return answer

    def _no_args(self, rest: str) -> None:
        if rest:
            raise InputError(f"takes no arguments, got {rest!r}")

    def _fail(self, message: str) -> Outcome:
        self._error(message)
        return Outcome.FAILED

    def _error(self, message: str) -> None:
        self.err.write(message + "\n")
        self.err.flush()
