"""The demo (``manage.py demo``) in a real Chromium (Playwright): two browser contexts
chat; one loses its connection for real (a TCP relay the test cuts, resetting both sides)
while the other sends 20 messages, comes back, and shows all 20 exactly once with the
"recovered" notice.  Screenshots go to the test's tmp dir (and to docs/images with
ROCKETWS_UPDATE_SCREENSHOTS=1)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Page

from .browser import Browser
from .relay import Relay
from .support import ROOT, wait_until

IMAGES = ROOT / "docs" / "images"


@dataclass
class Demo:
    proc: subprocess.Popen[str]
    app_url: str = ""
    ws_port: int = 0
    lines: list[str] = field(default_factory=list)

    def log(self) -> str:
        return "".join(self.lines)


@pytest.fixture(scope="module")
def demo() -> Iterator[Demo]:
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "demo", "--ws-conn=127.0.0.1:0", "--demo-port=0"],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    running = Demo(proc)
    started = threading.Event()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            running.lines.append(line)
            if m := re.search(r"websocket listening on ws://127\.0\.0\.1:(\d+)/", line):
                running.ws_port = int(m.group(1))
            if m := re.search(r"RocketWS demo: open (\S+)", line):
                running.app_url = m.group(1)
                started.set()
        started.set()

    threading.Thread(target=pump, daemon=True).start()
    assert started.wait(30) and running.app_url, running.log()
    yield running
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0, running.log()
    assert "Traceback (most recent call last)" not in running.log(), running.log()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    b = Browser()
    yield b
    b.close()


def _screenshot(page: Page, name: str, tmp_path: Path) -> None:
    page.screenshot(path=str(tmp_path / name))
    if os.environ.get("ROCKETWS_UPDATE_SCREENSHOTS"):
        IMAGES.mkdir(exist_ok=True)
        page.screenshot(path=str(IMAGES / name))


def _sign_in(page: Page, url: str, user: str, tmp_path: Path | None = None) -> None:
    page.goto(url)
    if tmp_path is not None:
        page.wait_for_selector("button[data-user]")
        _screenshot(page, "demo-signin.png", tmp_path)
    page.click(f"button[data-user={user}]")
    page.wait_for_function("window.demoApp.sub && window.demoApp.sub.state === 'subscribed'", timeout=15000)


def _texts(page: Page) -> list[str]:
    texts: list[str] = page.eval_on_selector_all("#log .text", "nodes => nodes.map(n => n.textContent)")
    return texts


def _say(page: Page, text: str) -> None:
    page.fill("#text", text)
    page.press("#text", "Enter")


def test_demo_serves_the_app_and_demo_tokens_only(demo: Demo) -> None:
    page = requests.get(demo.app_url, timeout=10)
    assert page.status_code == 200 and "RocketWS demo" in page.text
    assert (
        requests.post(demo.app_url + "api/sign-in", json={"user": "alice"}, timeout=10).json()["user"]
        == "alice"
    )
    assert (
        requests.post(demo.app_url + "api/sign-in", json={"user": "mallory"}, timeout=10).status_code == 403
    )
    # The RPC endpoint answers RocketWS only (its proxy key), so X-RocketWS-User cannot be forged.
    forged = {"jsonrpc": "2.0", "method": "chat.send", "params": {}, "id": 1}
    headers = {"X-RocketWS-User": "alice"}
    assert (
        requests.post(demo.app_url + "rocketws/rpc", json=forged, headers=headers, timeout=10).status_code
        == 403
    )
    message = {"room": "room:lobby", "text": "x", "id": "1"}
    assert requests.post(demo.app_url + "api/send", json=message, timeout=10).status_code == 401


def test_demo_two_users_chat_and_one_recovers_20_messages_after_a_cut(
    demo: Demo, browser: Browser, tmp_path: Path
) -> None:
    relay = Relay(demo.ws_port)
    alice = browser.new_page()
    bob = browser.new_page()
    try:
        _sign_in(alice, f"{demo.app_url}?ws=ws://127.0.0.1:{relay.port}/", "alice")
        _sign_in(bob, demo.app_url, "bob", tmp_path)
        _say(bob, "hello alice")
        wait_until(lambda: "hello alice" in _texts(alice), timeout=10, what="bob's message at alice's")
        _say(alice, "hi bob")
        wait_until(lambda: "hi bob" in _texts(bob), timeout=10, what="alice's message at bob's")

        relay.cut()
        alice.wait_for_function("window.demoApp.rws.state !== 'connected'", timeout=10000)
        sent = [f"while you were away {i}" for i in range(1, 21)]
        for text in sent:
            _say(bob, text)
        wait_until(lambda: _texts(bob)[-20:] == sent, timeout=10, what="bob's 20 messages")
        assert not set(sent) & set(_texts(alice))
        relay.restore()
        alice.wait_for_selector("#notice:has-text('reconnected, recovered 20 messages')", timeout=20000)
        texts = _texts(alice)
        assert [t for t in texts if t in sent] == sent  # all 20, exactly once, in order
        assert texts.count("hello alice") == 1 and texts.count("hi bob") == 1
        recoveries = alice.evaluate("window.demoApp.recoveries")
        assert recoveries == [
            {
                "wasRecovering": True,
                "recovered": True,
                "recoveredCount": 20,
                "epochChanged": False,
                "fresh": 20,
            }
        ]
        _screenshot(alice, "demo-chat.png", tmp_path)
    finally:
        relay.close()
        alice.context.close()
        bob.context.close()


def test_demo_pages_come_over_the_websocket(demo: Demo, browser: Browser, tmp_path: Path) -> None:
    page = browser.new_page()
    try:
        _sign_in(page, demo.app_url, "carol")
        page.click("a[data-page=about]")
        page.wait_for_selector("h2:has-text('About this demo')", timeout=10000)
        assert "fetched over the WebSocket" in page.inner_text("#view")
        _screenshot(page, "demo-about.png", tmp_path)
    finally:
        page.context.close()


def test_demo_presence_shows_both_users(demo: Demo, browser: Browser) -> None:
    dave = browser.new_page()
    carol = browser.new_page()
    try:
        _sign_in(dave, demo.app_url, "dave")
        _sign_in(carol, demo.app_url, "carol")
        assert dave.evaluate("window.demoApp.presence")  # the demo found presence on
        wait_until(
            lambda: (
                {"carol", "dave"}
                <= set(dave.eval_on_selector_all("#online .user", "n => n.map(x => x.textContent)"))
            ),
            timeout=10,
        )
    finally:
        dave.context.close()
        carol.context.close()
