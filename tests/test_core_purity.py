"""The pure core imports no gevent, socket, redis or transport code.

The run-time check imports the core in a fresh interpreter and finds none of the I/O
libraries or adapters loaded, not even ``socket``; a static check proves no core module
imports them itself.
"""

from __future__ import annotations

import ast
import subprocess
import sys

from .support import ROOT

CORE = [f"core.{path.stem}" for path in sorted((ROOT / "rocketws" / "core").glob("[!_]*.py"))] + [
    "config",
    "brokers.base",
    "brokers.memory",
]


def test_core_modules_load_no_gevent_redis_or_adapters() -> None:
    code = (
        "import sys\n"
        + "".join(f"import rocketws.{m}\n" for m in CORE)
        + "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('gevent', 'geventwebsocket', 'greenlet', 'redis', 'requests', 'socket', 'select', 'ssl', "
        "'asyncio', 'jsonrpcserver') "
        "or m.startswith(('rocketws.transports', 'rocketws.sources', 'rocketws.process')))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_core_modules_import_no_socket_themselves() -> None:
    banned = {"socket", "select", "selectors", "ssl", "gevent", "geventwebsocket", "redis", "asyncio"}
    for name in CORE:
        path = ROOT / "rocketws" / (name.replace(".", "/") + ".py")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                roots = {node.module.split(".")[0]}
            else:
                continue
            assert not roots & banned, f"{path.name} imports {roots & banned}"


def test_every_core_module_has_its_test_file() -> None:
    # Tests mirror modules (STYLE.md): rocketws/core/x.py is tested in tests/test_x.py.
    modules = [p.stem for p in (ROOT / "rocketws" / "core").glob("[!_]*.py")]
    missing = [m for m in modules if not (ROOT / "tests" / f"test_{m}.py").exists()]
    assert modules and not missing, f"core modules without tests/test_<module>.py: {missing}"
