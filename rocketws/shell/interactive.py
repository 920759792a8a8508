"""The terminal side of the shell: prompt_toolkit session, completion, highlighting,
JSON validation, bottom toolbar and persistent history."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from prompt_toolkit import PromptSession
from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.formatted_text import StyleAndTextTuples
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.input import Input
from prompt_toolkit.lexers import Lexer
from prompt_toolkit.output import Output
from prompt_toolkit.styles import Style
from prompt_toolkit.validation import ValidationError, Validator

from rocketws.shell.commands import COMMANDS, Cancelled, Outcome, Question, Shell
from rocketws.shell.parsing import (
    ALIASES,
    DEFAULT_DATA,
    InputError,
    JsonInputError,
    json_argument,
    parse_json,
    quote_word,
)

__all__ = [
    "JsonValidator",
    "LineValidator",
    "ShellCompleter",
    "ShellLexer",
    "Terminal",
    "history_path",
    "run_interactive",
]

PROMPT = "rocketws> "
HISTORY_ENV = "ROCKETWS_SHELL_HISTORY"
CHANNEL_ARGS = {"emit": 1, "subscribers": 1, "watch": None}  # None: every argument

STYLE = Style.from_dict(
    {
        "prompt": "bold ansicyan",
        "command": "bold ansiblue",
        "unknown": "ansired",
        "channel": "ansimagenta",
        "json.key": "ansicyan",
        "json.string": "ansigreen",
        "json.number": "ansiyellow",
        "json.keyword": "bold ansiyellow",
        "json.punct": "",
        "bottom-toolbar": "noreverse bg:#222222 #dddddd",
        "toolbar.ok": "bold ansigreen",
        "toolbar.down": "bold ansired",
    }
)


# -- completion ----------------------------------------------------------------------------


class ShellCompleter(Completer):
    """Completes command names, channel names (from ``channels()``), server method names
    (``rpc.discover``: ``methods()`` after ``call``; ``described()``, every method the
    server describes, client and proxied ones too, after ``help``) and the default data."""

    def __init__(
        self,
        channels: Callable[[], list[str]],
        methods: Callable[[], list[str]] = list,
        described: Callable[[], list[str]] | None = None,
    ) -> None:
        self.channels = channels
        self.methods = methods
        self.described = described or methods

    def get_completions(self, document: Document, complete_event: CompleteEvent) -> Iterable[Completion]:
        text = document.text_before_cursor.lstrip()
        if " " not in text:
            yield from _complete_commands(text)
            return
        name, _, rest = text.partition(" ")
        name = ALIASES.get(name, name)
        words = rest.split()
        current = "" if rest == "" or rest[-1].isspace() else words.pop()
        position = len(words)  # index of the argument being typed
        if name == "help" and position == 0:
            yield from _complete_commands(current)
            for method in self.described():
                if method.startswith(current) and method not in COMMANDS:
                    yield Completion(method, -len(current), display_meta="server method")
        elif name == "call" and position == 0:
            for method in self.methods():
                if method.startswith(current):
                    yield Completion(method, -len(current), display_meta="server method")
        elif name in CHANNEL_ARGS and _is_channel_position(name, words, position):
            for channel in self.channels():
                if channel.startswith(current):
                    yield Completion(quote_word(channel), -len(current), display=channel)
        elif name == "emit" and position == 1 and not current:
            yield Completion(DEFAULT_DATA, 0, display_meta="default data")


def _is_channel_position(name: str, words: list[str], position: int) -> bool:
    limit = CHANNEL_ARGS[name]
    if limit is None:  # watch: every argument except the value of -n
        return not (words and words[-1] == "-n")
    return position < limit


def _complete_commands(prefix: str) -> Iterable[Completion]:
    for command in COMMANDS.values():
        if command.name.startswith(prefix):
            yield Completion(command.name, -len(prefix), display_meta=command.summary)


# -- highlighting --------------------------------------------------------------------------

_JSON_TOKEN = re.compile(
    r'(?P<string>"(?:[^"\\]|\\.)*"?)'
    r"|(?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)"
    r"|(?P<keyword>true|false|null)"
    r"|(?P<punct>[{}\[\],:])"
    r"|(?P<space>\s+)"
    r"|(?P<other>.)"
)


def json_fragments(text: str) -> StyleAndTextTuples:
    """Style ``text`` as JSON (keys, strings, numbers, keywords, punctuation)."""
    fragments: StyleAndTextTuples = []
    for match in _JSON_TOKEN.finditer(text):
        kind = match.lastgroup or "other"
        if kind == "string" and text[match.end() :].lstrip().startswith(":"):
            kind = "key"
        style = "" if kind in ("space", "other") else f"class:json.{kind}"
        fragments.append((style, match.group()))
    return fragments


def line_fragments(line: str) -> StyleAndTextTuples:
    """Style one command line: command word, channel arguments, JSON data."""
    lead = len(line) - len(line.lstrip())
    name = line[lead:].partition(" ")[0]
    canonical = ALIASES.get(name, name)
    name_end = lead + len(name)
    fragments: StyleAndTextTuples = [
        ("", line[:lead]),
        ("class:command" if canonical in COMMANDS else "class:unknown", name),
    ]
    try:
        found = json_argument(line)
    except InputError:
        found = None
    args_style = "class:channel" if canonical in CHANNEL_ARGS else ""
    if found is None:
        fragments.append((args_style, line[name_end:]))
    else:
        offset = found[1]
        fragments.append((args_style, line[name_end:offset]))
        fragments.extend(json_fragments(line[offset:]))
    return fragments


class ShellLexer(Lexer):
    """Highlights command lines (first line) and JSON continuation lines."""

    def lex_document(self, document: Document) -> Callable[[int], StyleAndTextTuples]:
        lines = document.lines

        def get_line(number: int) -> StyleAndTextTuples:
            if number >= len(lines):
                return []
            return line_fragments(lines[number]) if number == 0 else json_fragments(lines[number])

        return get_line


class JsonLexer(Lexer):
    """Highlights a buffer that holds only JSON."""

    def lex_document(self, document: Document) -> Callable[[int], StyleAndTextTuples]:
        lines = document.lines
        return lambda n: json_fragments(lines[n]) if n < len(lines) else []


# -- validation ----------------------------------------------------------------------------


class LineValidator(Validator):
    """Refuses a command line whose JSON data does not parse, pointing at the error."""

    def validate(self, document: Document) -> None:
        try:
            found = json_argument(document.text)
        except InputError as exc:
            raise ValidationError(len(document.text), str(exc)) from None
        if found is None:
            return
        data, offset = found
        try:
            parse_json(data)
        except JsonInputError as exc:
            raise ValidationError(offset + exc.offset, str(exc)) from None


class JsonValidator(Validator):
    """Refuses text that is not one JSON value (empty text is allowed: the default)."""

    def validate(self, document: Document) -> None:
        if not document.text.strip():
            return
        try:
            parse_json(document.text)
        except JsonInputError as exc:
            raise ValidationError(exc.offset, str(exc)) from None


# -- the session ---------------------------------------------------------------------------


def history_path() -> Path:
    """``$ROCKETWS_SHELL_HISTORY``, else ``~/.rocketws_history``."""
    configured = os.environ.get(HISTORY_ENV)
    return Path(configured) if configured else Path.home() / ".rocketws_history"


def _history(path: Path | None) -> History:
    if path is None:
        return InMemoryHistory()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8"):
            pass
    except OSError:
        return InMemoryHistory()
    return FileHistory(str(path))


class Terminal:
    """prompt_toolkit front end of a Shell (``input``/``output`` default to the terminal)."""

    def __init__(
        self,
        shell: Shell,
        input: Input | None = None,
        output: Output | None = None,
        history: Path | None = None,
    ) -> None:
        self.shell = shell
        self._io: dict[str, Any] = {"input": input, "output": output}
        self.asking: PromptSession[str] | None = None  # the argument prompt being shown
        self.completer = ShellCompleter(shell.channel_names, shell.method_names, shell.described_names)
        self.session: PromptSession[str] = PromptSession(
            completer=self.completer,
            complete_while_typing=False,
            lexer=ShellLexer(),
            validator=LineValidator(),
            validate_while_typing=False,
            bottom_toolbar=self.toolbar,
            history=_history(history),
            style=STYLE,
            **self._io,
        )

    def toolbar(self) -> StyleAndTextTuples:
        """The bottom toolbar: connected URL and whether it is reachable."""
        state = {
            True: ("class:toolbar.ok", "● reachable"),
            False: ("class:toolbar.down", "✗ unreachable"),
            None: ("", "? not checked"),
        }[self.shell.reachable]
        return [
            ("", f" {self.shell.url} "),
            state,
            ("", f"  │ watch: {self.shell.ws_url}  │ Tab: complete  Ctrl-D: exit "),
        ]

    def ask(self, question: Question) -> str:
        """Prompt for a missing argument; raises Cancelled on Ctrl-C or Ctrl-D."""
        is_json = question.kind == "json"
        session: PromptSession[str] = PromptSession(
            completer=self.completer if question.kind == "channel" else None,
            complete_while_typing=False,
            lexer=JsonLexer() if is_json else None,
            validator=JsonValidator() if is_json else None,
            validate_while_typing=False,
            bottom_toolbar=self.toolbar,
            style=STYLE,
            **self._io,
        )
        self.asking = session
        try:
            return session.prompt([("class:prompt", f"{question.label}: ")], default=question.default)
        except (KeyboardInterrupt, EOFError):
            raise Cancelled from None
        finally:
            self.asking = None

    def loop(self) -> int:
        """Greet, then read and run commands until ``exit`` or Ctrl-D; returns 0."""
        self.shell.ask = self.ask
        self.shell.greet()
        while True:
            try:
                line = self.session.prompt([("class:prompt", PROMPT)])
            except KeyboardInterrupt:
                continue
            except EOFError:
                break
            try:
                if self.shell.execute(line) is Outcome.EXIT:
                    break
            except KeyboardInterrupt:  # e.g. Ctrl-C while a request or a connect waits
                self.shell.err.write("interrupted\n")
                self.shell.err.flush()
        return 0


def run_interactive(
    shell: Shell,
    input: Input | None = None,
    output: Output | None = None,
    history: Path | None = None,
) -> int:
    """Run the interactive shell; returns the exit code (0)."""
    return Terminal(shell, input, output, history).loop()
