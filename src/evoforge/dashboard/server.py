"""Serving the dashboard: open the runs read-only, bind (loopback by default; anywhere else
only with a token), print the URL, run uvicorn until Ctrl-C."""

from __future__ import annotations

import contextlib
import secrets
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from evoforge.errors import ConfigError, EvoforgeError

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def is_loopback(host: str) -> bool:
    return host in LOOPBACK or host.startswith("127.")


def plan_access(host: str, token: str | None) -> tuple[str | None, str | None]:
    """``(token to require, warning to print)`` for binding ``host``: loopback needs no token
    (unless one is given); any other address requires one (a generated one if none given)."""
    if is_loopback(host):
        return token, None
    warning = (f"the dashboard listens on {host}, not only on this machine: anyone who can reach "
               "it and has the token can read the runs (code, prompts, metrics)")
    return token or secrets.token_urlsafe(24), warning


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: any free port)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise ConfigError(f"--host {host}: cannot resolve it ({e}); use an IP address such as "
                          "127.0.0.1") from e
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as e:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port} ({e.strerror or e}); choose another "
                          "--port (0 picks a free one)") from e
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket, host: str, token: str | None) -> str:
    port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/" + (f"?token={token}" if token else "")


def make_server(app: Any) -> Any:
    """A uvicorn server for ``app`` (quiet; streams end within a second on shutdown)."""
    try:
        import uvicorn
    except ImportError as e:
        raise EvoforgeError("the dashboard needs uvicorn: pip install 'evoforge[dashboard]'") from e
    class _Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            app.state.stopping.set()  # event streams end, so the shutdown is prompt
            super().handle_exit(sig, frame)

    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2,
                            access_log=False, lifespan="on")
    return _Server(config)


def serve(runs: Sequence[str], *, host: str = "127.0.0.1", port: int = 8765,
          token: str | None = None, echo: Callable[[str], None] = print) -> None:
    """Open ``runs`` (run directories) read-only and serve the dashboard until interrupted."""
    from evoforge.dashboard.app import create_app
    from evoforge.dashboard.data import open_run

    if not runs:
        raise ConfigError("give at least one run directory: evoforge dashboard RUN [RUN...]")
    token, warning = plan_access(host, token)
    views = []
    try:
        names: dict[str, int] = {}
        for ref in runs:
            view = open_run(ref)
            n = names.get(view.name, 0)
            names[view.name] = n + 1
            if n:
                view.name = f"{view.name} ({n + 1})"
            views.append(view)
        app = create_app(views, token=token, allowed_hosts=() if is_loopback(host) else (host,))
    except BaseException:
        for v in views:
            v.close()
        raise
    sock = bind(host, port)
    if warning:
        echo(f"warning: {warning}")
    echo(f"evoforge dashboard: {url_of(sock, host, token)}  (Ctrl-C stops it)")
    server = make_server(app)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()


@contextlib.contextmanager
def running(app: Any, *, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``app`` from a background thread while the block runs; yields its base URL. The
    socket listens before the thread starts, so the URL answers at once (tests, benchmarks)."""
    sock = bind(host, port)
    server = make_server(app)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                              name="evoforge-dashboard", daemon=True)
    thread.start()
    try:
        yield url_of(sock, host, None).rstrip("/")
    finally:
        app.state.stopping.set()
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
