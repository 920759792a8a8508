"""The MessagesSource API key, end to end: a real server, the Python client, the shell,
and `manage.py token` / `manage.py init` as subprocesses (issue 10, "Backend side")."""

from __future__ import annotations

import hmac
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
import requests

from rocketws.brokers.memory import MemoryBroker
from rocketws.client import Client, ServerRpcError
from rocketws.config import Config, load_config
from rocketws.core.exceptions import ConfigError
from rocketws.core.hub import Hub
from rocketws.core.node import Node
from rocketws.sources import http

from .support import ServerProcess, manage

KEY = "k3y-" + "x" * 28  # test value, not a real secret
PING = {"jsonrpc": "2.0", "method": "ping", "id": 1}


@pytest.fixture(scope="module")
def keyed() -> Iterator[ServerProcess]:
    srv = ServerProcess(env={"ROCKETWS_API_KEY": KEY}).start()
    yield srv
    srv.kill()
    assert KEY not in srv.log()


def _post(srv: ServerProcess, **headers: str) -> requests.Response:
    return requests.post(srv.ms_url, json=PING, headers=headers, timeout=10)


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "missing API key"),
        ({"Authorization": f"Bearer {KEY}"}, "missing API key"),
        ({"X-API-Key": KEY + "x"}, "wrong API key"),
        ({"Authorization": "apikey wrong"}, "wrong API key"),
    ],
)
def test_source_refuses_missing_or_wrong_key_with_401(
    keyed: ServerProcess, headers: dict[str, str], reason: str
) -> None:
    resp = _post(keyed, **headers)
    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"].startswith("apikey ")
    body = resp.json()
    assert body["id"] is None and body["error"]["code"] == -32030
    assert body["error"]["message"] == "Unauthorized" and body["error"]["data"]["reason"].startswith(reason)
    assert KEY not in resp.text


@pytest.mark.parametrize(
    "headers", [{"X-API-Key": KEY}, {"Authorization": f"apikey {KEY}"}, {"Authorization": f"ApiKey {KEY}"}]
)
def test_source_serves_the_right_key_in_either_header(keyed: ServerProcess, headers: dict[str, str]) -> None:
    resp = _post(keyed, **headers)
    assert resp.status_code == 200 and resp.json()["result"] == "pong"


def test_health_stays_open_without_the_key(keyed: ServerProcess) -> None:
    resp = requests.get(keyed.ms_url + "health", timeout=10)
    assert resp.status_code == 200 and resp.json()["status"] == "ok"


def test_big_body_without_the_key_is_refused_before_it_is_read(keyed: ServerProcess) -> None:
    resp = requests.post(keyed.ms_url, data=b"[" + b"1," * 3_000_000 + b"1]", timeout=10)
    assert resp.status_code == 401 and resp.json()["error"]["code"] == -32030
    keyed.assert_no_traceback()


def test_client_sends_the_key_and_reports_a_wrong_one(keyed: ServerProcess) -> None:
    with Client(keyed.ms_url, api_key=KEY) as client:
        assert client.ping() == "pong"
        assert client.disconnect("nobody") == {"user": "nobody", "reached": 0}
        assert KEY not in repr(client)
    with Client(keyed.ms_url, api_key="not-the-key") as client, pytest.raises(ServerRpcError) as caught:
        client.ping()
    assert caught.value.code == -32030 and KEY not in str(caught.value)


def test_key_comparison_is_hmac_compare_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    assert http.compare_digest is hmac.compare_digest
    calls: list[tuple[bytes, bytes]] = []

    def recording(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return hmac.compare_digest(a, b)

    monkeypatch.setattr(http, "compare_digest", recording)
    app = http.MessagesSourceApp(Node(Hub(), MemoryBroker()), Config(api_key=KEY))
    assert app.authorize(KEY.encode()) is None
    denied = app.authorize(b"guess")
    assert denied is not None and denied.status == 401
    assert calls == [(KEY.encode(), KEY.encode()), (b"guess", KEY.encode())]


def test_short_or_spaced_key_is_refused_without_showing_it() -> None:
    for bad in ("short-key", "has a space in the middle"):
        with pytest.raises(ConfigError) as caught:
            load_config(None, {"ROCKETWS_API_KEY": bad})
        assert bad not in str(caught.value) and "(hidden)" in str(caught.value)
    assert KEY not in repr(load_config(None, {"ROCKETWS_API_KEY": KEY}))


# -- manage.py shell with the key ------------------------------------------------------


def test_shell_takes_the_key_from_the_environment_or_the_flag_and_never_prints_it(
    keyed: ServerProcess, tmp_path: Path
) -> None:
    history = tmp_path / "history"
    env = {"ROCKETWS_SHELL_HISTORY": str(history)}
    by_env = manage(
        "shell", f"--ms-conn={keyed.ms_url}", "-c", "ping\nsubscribers", env={**env, "ROCKETWS_API_KEY": KEY}
    )
    by_flag = manage("shell", f"--ms-conn={keyed.ms_url}", f"--api-key={KEY}", stdin="ping\n", env=env)
    wrong = manage("shell", f"--ms-conn={keyed.ms_url}", f"--api-key={KEY}-wrong", "-c", "ping", env=env)
    missing = manage("shell", f"--ms-conn={keyed.ms_url}", "-c", "ping", env=env)
    assert by_env.returncode == 0 and "pong" in by_env.stdout
    assert by_flag.returncode == 0 and "pong" in by_flag.stdout
    assert wrong.returncode == missing.returncode == 1
    assert "error -32030: Unauthorized" in wrong.stderr and "missing API key" in missing.stderr
    for run in (by_env, by_flag, wrong, missing):
        assert KEY not in run.stdout + run.stderr
        assert "Traceback" not in run.stderr
    assert not history.exists() or KEY not in history.read_text()


# -- manage.py token and init ----------------------------------------------------------

SECRET = "test-secret-" + "s" * 40


def test_token_prints_a_jwt_signed_with_the_configured_secret() -> None:
    run = manage(
        "token",
        "--user=alice",
        "--ttl=60",
        '--info={"name": "Alice"}',
        env={"ROCKETWS_TOKEN_HMAC_SECRET": SECRET},
    )
    assert run.returncode == 0, run.stderr
    token = run.stdout.strip()
    assert run.stdout.count("\n") == 1 and SECRET not in run.stdout + run.stderr
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["sub"] == "alice" and claims["info"] == {"name": "Alice"}
    assert claims["exp"] - claims["iat"] == 60
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, SECRET + "x", algorithms=["HS256"])


def test_token_with_a_channel_is_a_subscription_token() -> None:
    run = manage(
        "token", "--user=bob", "--channel=chat:room", "--ttl=0", env={"ROCKETWS_TOKEN_HMAC_SECRET": SECRET}
    )
    assert run.returncode == 0, run.stderr
    claims = jwt.decode(run.stdout.strip(), SECRET, algorithms=["HS256"])
    assert claims["sub"] == "bob" and claims["channel"] == "chat:room" and "exp" not in claims


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--user=a"], {}, "no token secret"),
        (["--user=a", "--info={bad"], {"ROCKETWS_TOKEN_HMAC_SECRET": SECRET}, "--info is not JSON"),
        (["--user=a", "--ttl=-5"], {"ROCKETWS_TOKEN_HMAC_SECRET": SECRET}, "--ttl"),
        ([], {"ROCKETWS_TOKEN_HMAC_SECRET": SECRET}, "bad arguments"),
    ],
)
def test_token_fails_with_exit_2_and_one_line(args: list[str], env: dict[str, str], message: str) -> None:
    run = manage("token", *args, env={"ROCKETWS_TOKEN_HMAC_SECRET": "", **env})
    assert run.returncode == 2 and run.stdout == ""
    assert message in run.stderr and run.stderr.count("\n") == 1, run.stderr


def test_init_writes_private_settings_with_fresh_secrets_that_load(tmp_path: Path) -> None:
    first, second = tmp_path / "one", tmp_path / "two"
    for directory in (first, second):
        run = manage("init", str(directory))
        assert run.returncode == 0, run.stderr
    path = first / "settings.py"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    texts = [path.read_text(), (second / "settings.py").read_text()]
    namespace: dict[str, object] = {}
    exec(compile(texts[0], str(path), "exec"), namespace)  # noqa: S102 - the file we just wrote
    settings = type("Settings", (), namespace)
    config = load_config(settings, {})
    assert config.api_key and len(config.api_key) >= 32
    assert [ns.name for ns in config.namespaces] == ["news", "chat"]
    assert config.api_key not in run.stdout and config.api_key not in texts[1]  # fresh per run
    # the token helper signs with the secret the file holds (settings found in the cwd)
    token = subprocess.run(
        [sys.executable, "-m", "rocketws.process.cli", "token", "--user=carol"],
        cwd=first,
        env={**os.environ, "ROCKETWS_TOKEN_HMAC_SECRET": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert token.returncode == 0, token.stderr
    secret = namespace["AUTH"]["TOKEN_HMAC_SECRET"]  # type: ignore[index]
    assert jwt.decode(token.stdout.strip(), secret, algorithms=["HS256"])["sub"] == "carol"


def test_init_refuses_to_overwrite_with_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "settings.py"
    path.write_text("KEEP = 1\n")
    run = manage("init", str(tmp_path))
    assert run.returncode == 2 and run.stderr.count("\n") == 1 and "exists" in run.stderr
    assert path.read_text() == "KEEP = 1\n"
