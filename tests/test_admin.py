"""The admin dashboard (``GET /admin`` on the MessagesSource port) against a real server:
served as a page without data, its figures behind the API key; in Chromium it shows live
numbers that change when clients connect and subscribe, and its console runs backend
methods.  A screenshot goes to the test's tmp dir (docs/images with
ROCKETWS_UPDATE_SCREENSHOTS=1)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from .browser import Browser
from .support import ROOT, ServerProcess, StartServer, subscribe, ws_connect

KEY = "admin-dashboard-test-api-key-0123456789"


@pytest.fixture(scope="module")
def keyed() -> Iterator[ServerProcess]:
    srv = ServerProcess(env={"ROCKETWS_API_KEY": KEY}).start()
    yield srv
    srv.kill()


def test_admin_page_is_served_without_data_and_its_figures_need_the_key(keyed: ServerProcess) -> None:
    page = requests.get(keyed.ms_url + "admin", timeout=10)
    assert page.status_code == 200
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert "RocketWS admin" in page.text and KEY not in page.text
    assert requests.post(keyed.ms_url + "admin", timeout=10).status_code == 405
    call = {"jsonrpc": "2.0", "method": "available_channels", "id": 1}
    assert requests.post(keyed.ms_url, json=call, timeout=10).status_code == 401


def test_admin_off_is_404(start_server: StartServer) -> None:
    srv = start_server(ROCKETWS_ADMIN="0")
    assert requests.get(srv.ms_url + "admin", timeout=10).status_code == 404


def test_admin_dashboard_shows_live_numbers_and_runs_methods(keyed: ServerProcess, tmp_path: Path) -> None:
    browser = Browser()
    clients = []
    try:
        page = browser.page
        page.goto(keyed.ms_url + "admin")
        page.wait_for_selector("#status:has-text('API key needed')", timeout=10000)
        page.fill("#key", KEY)
        page.dispatch_event("#key", "change")
        page.wait_for_selector("#status:has-text('live')", timeout=10000)
        page.wait_for_selector("#connections:text-is('0')", timeout=10000)
        for _ in range(3):
            ws = ws_connect(keyed.ws_url)
            subscribe(ws, "admin-room")
            clients.append(ws)
        page.wait_for_selector("#connections:text-is('3')", timeout=10000)
        page.wait_for_selector("#channels:text-is('1')", timeout=10000)
        page.wait_for_selector("#channel-list td:text-is('admin-room')", timeout=10000)
        page.select_option("#method", "emit")
        page.fill("#params", json.dumps({"channel": "admin-room", "data": "from the console"}))
        page.click("#run")
        page.wait_for_selector("#answer:has-text('delivered')", timeout=10000)
        answer = json.loads(page.inner_text("#answer"))
        assert answer["result"] == {"channel": "admin-room", "delivered": 3}
        for ws in clients:
            assert json.loads(ws.recv(timeout=10))["params"]["data"] == "from the console"
        clients.pop().close()
        page.wait_for_selector("#connections:text-is('2')", timeout=10000)
        page.screenshot(path=str(tmp_path / "admin.png"))
        if os.environ.get("ROCKETWS_UPDATE_SCREENSHOTS"):
            page.screenshot(path=str(ROOT / "docs" / "images" / "admin.png"))
    finally:
        for ws in clients:
            ws.close()
        browser.close()
