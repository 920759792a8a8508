"""``manage.py demo``: RocketWS with a small demo backend and a single-page chat app.

Off by default: nothing here runs, and no token endpoint exists, unless ``manage.py demo``
(``make demo``) is started.  ``run`` starts ``manage.py runserver`` as a child process
with a fresh HMAC secret, a ``room`` namespace with history (and presence and join/leave
where the server has them) and its RPC proxy pointed at the demo backend
(``backend.py``), then serves the app until interrupted.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
from typing import Any

from rocketws.core.channels import Namespace
from rocketws.demo.backend import PROXY_KEY_HEADER, ROOM_NAMESPACE, ROOMS, USERS, DemoBackend

_LISTEN = re.compile(r"(websocket|messages source) listening on (\S+)")


def room_namespace() -> dict[str, Any]:
    """The ``room`` namespace: history always; presence and join/leave where this server
    implements them (an option still declared as a placeholder is left out)."""
    namespace: dict[str, Any] = {"name": ROOM_NAMESPACE}
    fields = {field.name: field for field in dataclasses.fields(Namespace)}
    wanted = {"history_size": 500, "history_ttl": 3600, "presence": True, "join_leave": True}
    for option, value in wanted.items():
        field = fields.get(option)
        if field is not None and not field.metadata.get("placeholder"):
            namespace[option] = value
    return namespace


def server_env(secret: str, proxy_key: str, backend_url: str, origin: str) -> dict[str, str]:
    """The ROCKETWS_* environment of the demo's RocketWS."""
    return {
        "ROCKETWS_TOKEN_HMAC_SECRET": secret,
        "ROCKETWS_PROXY_STATIC_HEADERS": json.dumps({PROXY_KEY_HEADER: proxy_key}),
        "ROCKETWS_NAMESPACES": json.dumps([room_namespace()]),
        "ROCKETWS_ALLOW_UNKNOWN_NAMESPACES": "0",
        "ROCKETWS_RPC_PROXY_URL": backend_url + "rocketws/rpc",
        "ROCKETWS_ALLOWED_ORIGINS": origin,
    }


def run(ws_conn: str, demo_port: int, command: list[str]) -> int:
    """Start RocketWS (``command`` + ``runserver ...``: how this process was started) on
    ``ws_conn`` and the demo backend on 127.0.0.1:``demo_port``; print the app's address;
    stop both on SIGINT/SIGTERM.  Returns an exit status."""
    secret, proxy_key = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    config: dict[str, Any] = {"users": list(USERS), "rooms": [f"{ROOM_NAMESPACE}:{r}" for r in ROOMS]}
    backend = DemoBackend(("127.0.0.1", demo_port), secret, config, proxy_key)
    origin = backend.url.rstrip("/")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **server_env(secret, proxy_key, backend.url, origin)}
    server = subprocess.Popen(
        [*command, "runserver", f"--ws-conn={ws_conn}", "--ms-conn=127.0.0.1:0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert server.stdout is not None
    urls: dict[str, str] = {}
    for line in server.stdout:
        sys.stderr.write(line)
        match = _LISTEN.search(line)
        if match:
            urls[match.group(1)] = match.group(2).replace("0.0.0.0", "127.0.0.1")
            if len(urls) == 2:
                break
    ws_url = urls.get("websocket")
    if ws_url is None or "messages source" not in urls:
        backend.server_close()
        return server.wait() or 1
    config["ws"] = ws_url
    backend.messages_source = urls["messages source"]
    config["client"] = ws_url.replace("ws://", "http://", 1).replace("wss://", "https://", 1) + "rocketws.js"
    backend.serve_in_thread()
    threading.Thread(
        target=lambda: [sys.stderr.write(line) for line in server.stdout or ()], daemon=True
    ).start()
    print(f"RocketWS demo: open {backend.url} (users: {', '.join(USERS)}); Ctrl-C stops", flush=True)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    while not stop.wait(0.5):
        if server.poll() is not None:
            break
    backend.shutdown()
    backend.server_close()
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
    return server.wait(15)
