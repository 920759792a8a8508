"""RocketWS command line.

Usage:
  manage.py runserver [--ws-conn=HOST:PORT] [--ms-conn=HOST:PORT] [--broker=URL] [--workers=N]
                      [--tls-cert=PEM --tls-key=PEM]
  manage.py shell [--ms-conn=URL] [--ws-conn=URL] [--api-key=KEY] [-c COMMAND]
  manage.py token --user=ID [--ttl=S] [--info=JSON] [--channel=C]
  manage.py init [DIR]
  manage.py demo [--ws-conn=HOST:PORT] [--demo-port=PORT]
  manage.py tests [ARGS...]
  manage.py bench [BENCH-OPTIONS...]
  manage.py (-h | --help)
  manage.py --version

Commands:
  runserver   Run the WebSocket endpoint and the MessagesSource (Ctrl-C or SIGTERM stops).
  shell       Backend console for a MessagesSource (docs/shell.md); -c runs COMMAND.
  token       Print a connection token (JWT, HS256) for user ID, signed with
              AUTH["TOKEN_HMAC_SECRET"] / ROCKETWS_TOKEN_HMAC_SECRET (or, given a
              channel, a subscription token for it).
  init        Write DIR/settings.py (DIR: the current directory) with fresh
              secrets, mode 0600; an existing file is never overwritten.
  demo        Run RocketWS with the demo backend and its chat app (docs/client-js.md);
              the only command that issues tokens over HTTP (to demo users).
  tests       Run the test suite with pytest; ARGS go to pytest (put them after --).
  bench       Size this machine in minutes (source checkout with '.[bench]'): fan-out
              CPU per delivery, idle memory per connection and latency of RocketWS,
              with a live progress bar, a summary and sizing table, and a plot;
              `manage.py bench --help` lists the options (--quick, --scenarios
              scale: 100,000 connections on Redis, --servers ...,peer, ...).

Options:
  --ws-conn=HOST:PORT  WebSocket endpoint [default from settings: {d.websocket}].
                       Also :PORT (host {d.websocket.host}) or [::1]:PORT.
  --ms-conn=HOST:PORT  MessagesSource (backend HTTP API) [default from settings:
                       {d.backend}]; :PORT means {d.backend.host}.
  --broker=URL         {d.broker} (default) or redis://host:port/db to join other
                       nodes through Redis (see docs/scaling.md).
  --workers=N          Run N worker processes sharing both ports (SO_REUSEPORT);
                       N > 1 needs a Redis broker [default: 1].
  --api-key=KEY        shell: the MessagesSource API key [default from settings /
                       ROCKETWS_API_KEY, which is better: flags show in `ps`].
  --user=ID            token: the user id (the `sub` claim).
  --ttl=S              token: seconds until it expires; 0 = never [default: 3600].
  --info=JSON          token: public info attached to the connection (any JSON).
  --channel=C          token: make a subscription token for channel C.
  --tls-cert=PEM       Serve wss:// and https:// with this certificate (chain) and
  --tls-key=PEM        its private key; SIGHUP re-reads both (docs/security.md#tls).
  --demo-port=PORT     demo: the app's HTTP port on 127.0.0.1 [default: 8000].
  -c COMMAND           shell: run COMMAND (one per line), print results, exit.
                       The shell also takes URLs for both addresses
                       (http://host:port/path, ws://host:port/); its WebSocket
                       address defaults to the MessagesSource host.
  -h --help            Show this help.
  --version            Show the version.

Settings come from settings.py (next to manage.py) or the module named by
ROCKETWS_SETTINGS, then ROCKETWS_* environment variables, then the flags above.
Exit status: 0 on success, 1 if the server failed to start, 2 for bad arguments or settings.
shell: 0 every command succeeded, 1 a command failed, 2 bad arguments, 3 server unreachable.
token, init: 0 done, 2 bad arguments or settings, no token secret, or settings.py exists.
"""

from __future__ import annotations

import importlib
import logging
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from docopt import DocoptExit, docopt

from rocketws import __version__
from rocketws.config import DEFAULTS, load_config
from rocketws.core.exceptions import ConfigError

USAGE = (__doc__ or "").format(d=DEFAULTS)

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def _fail(message: str, code: int = EXIT_USAGE) -> int:
    print(f"rocketws: error: {message}", file=sys.stderr)
    return code


def load_settings_module() -> ModuleType | None:
    """The settings module: $ROCKETWS_SETTINGS, else ``settings`` if importable, else None."""
    name = os.environ.get("ROCKETWS_SETTINGS")
    if name:
        try:
            return importlib.import_module(name)
        except ImportError as exc:
            raise ConfigError("ROCKETWS_SETTINGS", name, f"cannot import: {exc}") from None
    try:
        return importlib.import_module("settings")
    except ModuleNotFoundError as exc:
        if exc.name != "settings":
            raise
        return None


def _workers(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise ConfigError("--workers", value, "expected a whole number above 0")
    return int(value)


def _runserver(args: dict[str, Any]) -> int:
    config = load_config(
        load_settings_module(),
        os.environ,
        ws_conn=args["--ws-conn"],
        ms_conn=args["--ms-conn"],
        broker=args["--broker"],
        tls_cert=args["--tls-cert"],
        tls_key=args["--tls-key"],
    )
    workers = _workers(args["--workers"])
    from rocketws.process.limits import OpenFilesTooLow, ensure_open_files

    try:
        open_files = ensure_open_files(config.max_connections, workers)
    except OpenFilesTooLow as exc:
        return _fail(str(exc), EXIT_FAILURE)
    if workers > 1:
        if not config.broker.startswith("redis://"):
            raise ConfigError(
                "--workers",
                workers,
                "more than 1 worker needs a Redis broker "
                "(--broker=redis://host:port/db); with the memory broker "
                "each worker would reach only its own clients",
            )
        from rocketws.brokers import create_broker
        from rocketws.process.server import configure_logging
        from rocketws.process.supervisor import Supervisor
        from rocketws.transports.tls import TlsContext

        if config.tls_cert is not None and config.tls_key is not None:
            TlsContext(config.tls_cert, config.tls_key)  # bad files: refused here, not per worker

        try:
            create_broker(config.broker)  # a bad URL is refused here, not in every worker
        except ValueError as exc:
            return _fail(str(exc))
        configure_logging(config)
        return Supervisor(config, workers).run()

    from gevent import monkey

    monkey.patch_all()
    from rocketws.process.server import Server, StartupError, configure_logging
    from rocketws.process.supervisor import WORKER_ENV, exit_with_parent

    configure_logging(config)
    try:
        server = Server(config, reuse_port=bool(os.environ.get(WORKER_ENV)))
    except StartupError as exc:
        return _fail(str(exc), EXIT_FAILURE)
    except ValueError as exc:  # e.g. an unsupported broker URL
        return _fail(str(exc))
    logging.getLogger("rocketws.server").info("%s", open_files.describe())
    if os.environ.get(WORKER_ENV):
        exit_with_parent(server.request_stop)
    server.serve_forever()
    return EXIT_OK


def _shell(args: dict[str, Any]) -> int:
    from rocketws.shell import main as shell_main

    config = load_config(load_settings_module(), os.environ)
    return shell_main(
        args["--ms-conn"] or str(config.backend),
        args["--ws-conn"],
        args["-c"],
        ws_port=config.websocket.port,
        api_key=args["--api-key"] or config.api_key,
    )


def _token(args: dict[str, Any]) -> int:
    from rocketws.process.token_cli import TokenError, print_token

    settings = load_settings_module()
    try:
        print_token(load_config(settings, os.environ), settings, os.environ, args)
    except TokenError as exc:
        return _fail(str(exc))
    return EXIT_OK


def _init(args: dict[str, Any]) -> int:
    from rocketws.process.token_cli import init_settings

    directory = Path(args["DIR"] or ".")
    try:
        path = init_settings(directory)
    except FileExistsError:
        return _fail(f"{directory / 'settings.py'} exists; not overwriting it")
    except OSError as exc:
        return _fail(f"cannot write {directory / 'settings.py'}: {exc.strerror or exc}")
    print(f"wrote {path} (mode 0600, fresh API key and token secret): keep it out of version control")
    return EXIT_OK


def _demo(args: dict[str, Any]) -> int:
    from rocketws import demo  # only the demo command loads it

    script = Path(sys.argv[0])
    command = (
        [sys.executable, str(script)] if script.name == "manage.py" else [sys.executable, "-m", __name__]
    )
    return demo.run(args["--ws-conn"] or "127.0.0.1:58000", int(args["--demo-port"]), command)


def _tests(args: dict[str, Any]) -> int:
    root = Path(__file__).resolve().parent.parent
    cmd = [sys.executable, "-m", "pytest", *args["ARGS"]]
    return subprocess.call(cmd, cwd=root if (root / "tests").is_dir() else None)


def _bench(argv: list[str]) -> int:
    try:
        from benchmarks.sizing import main as bench_main
    except ImportError as exc:
        return _fail(
            f"manage.py bench needs the source checkout's benchmarks/ and the bench extras "
            f"(pip install -e '.[bench]'): {exc}",
            EXIT_FAILURE,
        )
    return bench_main(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``manage.py`` and the ``rocketws`` console script."""
    args_in = sys.argv[1:] if argv is None else argv
    if args_in[:1] == ["bench"]:  # its options are the benchmark's own (argparse), not docopt's
        return _bench(args_in[1:])
    try:
        args = docopt(USAGE, argv=argv, version=f"RocketWS {__version__}")
    except DocoptExit as exc:
        usage = str(exc).strip().splitlines()
        return _fail(
            f"bad arguments: {' '.join(argv if argv is not None else sys.argv[1:])!r} (see --help)"
            if usage
            else "bad arguments"
        )
    try:
        if args["runserver"]:
            return _runserver(args)
        if args["shell"]:
            return _shell(args)
        if args["token"]:
            return _token(args)
        if args["init"]:
            return _init(args)
        if args["demo"]:
            return _demo(args)
        if args["tests"]:
            return _tests(args)
    except ConfigError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return EXIT_OK
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
