"""rocketws.js (clients/js/): served at ``GET /rocketws.js`` by a real server, and its
``node --test`` suite (tests/node/*.test.mjs) against real servers, run from here so
``make test`` and CI fail when it fails."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import requests

from .support import ROOT, ServerProcess, StartServer

NODE_DIR = ROOT / "tests" / "node"
CLIENT = ROOT / "clients" / "js" / "rocketws.js"


def _http(server: ServerProcess) -> str:
    return server.ws_url.replace("ws://", "http://", 1)


def test_server_serves_rocketws_js_with_caching_headers(server: ServerProcess) -> None:
    resp = requests.get(_http(server) + "rocketws.js", timeout=10)
    assert resp.status_code == 200
    assert resp.content == CLIENT.read_bytes()
    assert resp.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert resp.headers["Cache-Control"] == "public, max-age=600"
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    etag = resp.headers["ETag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    again = requests.get(_http(server) + "rocketws.js?v=2", headers={"If-None-Match": etag}, timeout=10)
    assert (again.status_code, again.content, again.headers["ETag"]) == (304, b"", etag)
    stale = requests.get(_http(server) + "rocketws.js", headers={"If-None-Match": '"old"'}, timeout=10)
    assert stale.status_code == 200 and stale.content == resp.content
    head = requests.head(_http(server) + "rocketws.js", timeout=10)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["Content-Length"] == str(len(resp.content))
    assert requests.post(_http(server) + "rocketws.js", timeout=10).status_code == 405
    assert requests.get(_http(server) + "other.js", timeout=10).status_code == 404


def test_server_with_serve_client_off_answers_404(start_server: StartServer) -> None:
    srv = start_server(ROCKETWS_SERVE_CLIENT="0")
    assert requests.get(_http(srv) + "rocketws.js", timeout=10).status_code == 404


def _node() -> str:
    node = shutil.which("node")
    if node is None or not (NODE_DIR / "node_modules" / "ws").is_dir():
        if os.environ.get("CI"):
            pytest.fail("node or tests/node/node_modules missing in CI (`make test` installs them)")
        pytest.skip("node or the ws package missing (run: cd tests/node && npm ci)")
    return node


@pytest.mark.timeout(600)
def test_rocketws_js_node_suite_passes() -> None:
    suites = sorted(str(p.relative_to(NODE_DIR)) for p in NODE_DIR.glob("*.test.mjs"))
    assert suites, "no tests/node/*.test.mjs"
    proc = subprocess.run(
        [_node(), "--test", "--test-concurrency=1", "--test-reporter=spec", *suites],
        cwd=NODE_DIR,
        env={**os.environ, "ROCKETWS_PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert proc.returncode == 0, f"node --test failed:\n{proc.stdout}\n{proc.stderr}"
    assert "# fail 0" in proc.stdout or "ℹ fail 0" in proc.stdout, proc.stdout


def test_rocketws_d_ts_type_checks_the_documented_usage() -> None:
    _node()
    tsc = NODE_DIR / "node_modules" / ".bin" / "tsc"
    if not tsc.exists():
        if os.environ.get("CI"):
            pytest.fail("typescript missing from tests/node/node_modules in CI (`make test` runs npm ci)")
        pytest.skip("typescript missing (run: cd tests/node && npm ci)")
    proc = subprocess.run(
        [str(tsc), "--noEmit", "--strict", "--target", "es2022", "--module", "nodenext", "types-check.ts"],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
