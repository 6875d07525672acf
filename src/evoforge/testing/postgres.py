"""A real, throwaway PostgreSQL server on loopback for tests, benchmarks and demo scripts.

``LocalPostgres`` runs Debian's PostgreSQL binaries (``/usr/lib/postgresql/*/bin``) on a fresh
data directory: listening only on 127.0.0.1 on a free port, its unix socket inside its own
directory, trust authentication (loopback only), a superuser ``evoforge`` and a database
``evoforge``. PostgreSQL refuses to run as root, so as root the server runs as the system user
``evoforge-pg`` (created with ``useradd`` when missing; ``nobody`` when it cannot be) and the
directory is handed to that user. Everything it starts is marked by its directory: the server's
pid is in ``DIR/data/postmaster.pid`` and ``DIR/server.json`` says how to stop it.

From a shell script::

    url=$(python -m evoforge.testing.postgres start --dir DIR [--port P] | tail -n 1)
    ...
    python -m evoforge.testing.postgres stop --dir DIR

``start`` returns once the server accepts connections and prints its URL as the last line.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from types import TracebackType

from evoforge.errors import EvoforgeError

SYSTEM_USER = "evoforge-pg"
SUPERUSER = "evoforge"
DATABASE = "evoforge"
_STATE = "server.json"
_START_TIMEOUT = 60


class PostgresUnavailable(EvoforgeError):
    """Debian's PostgreSQL server binaries are not installed here."""


def find_bin_dir() -> Path:
    """The newest ``/usr/lib/postgresql/VERSION/bin`` holding ``initdb`` and ``pg_ctl``."""
    found = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")
             if Path(p).with_name("pg_ctl").is_file()]
    if not found:
        raise PostgresUnavailable(
            "no PostgreSQL server binaries in /usr/lib/postgresql/*/bin (initdb, pg_ctl); "
            "install them with `apt-get install postgresql`")
    return max(found, key=lambda p: _version_key(p.parent.name))


def _version_key(name: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in name.split("."))
    except ValueError:
        return (0,)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server_user() -> tuple[int, int, str]:
    """(uid, gid, name) the server runs as: this user, or as root an unprivileged one."""
    if os.geteuid() != 0:
        entry = pwd.getpwuid(os.geteuid())
        return entry.pw_uid, entry.pw_gid, entry.pw_name
    try:
        entry = pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        if shutil.which("useradd"):
            subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                            "--shell", "/usr/sbin/nologin", "--user-group", SYSTEM_USER],
                           capture_output=True, check=False)
        try:
            entry = pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            entry = pwd.getpwnam("nobody")
    return entry.pw_uid, entry.pw_gid, entry.pw_name


class LocalPostgres:
    """One PostgreSQL server in its own directory (a new temp dir unless ``dir`` is given).

    ``settings`` are extra server settings (``{"fsync": "off"}`` for fast throwaway tests).
    A context manager: ``with LocalPostgres() as pg: pg.url`` (``close()`` on exit: the server
    stopped, and the directory removed when this object created it).
    """

    def __init__(self, dir: str | Path | None = None, *, port: int | None = None,
                 settings: dict[str, str] | None = None) -> None:
        self.bin_dir = find_bin_dir()
        self._own_dir = dir is None
        self.dir = Path(tempfile.mkdtemp(prefix="evoforge-pg-") if dir is None
                        else dir).absolute()
        self.port = port
        self.settings = dict(settings or {})
        self.uid, self.gid, self.user = _server_user()

    @property
    def data(self) -> Path:
        return self.dir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.dir / "sock"

    @property
    def log_file(self) -> Path:
        return self.dir / "server.log"

    @property
    def url(self) -> str:
        if self.port is None:
            raise EvoforgeError("the PostgreSQL server has not been started")
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{DATABASE}"

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> str:
        """Create the cluster (first time), start the server, wait until it accepts
        connections; returns its URL."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self._check_reachable()
        for d in (self.dir, self.socket_dir):
            d.mkdir(exist_ok=True)
            if os.geteuid() == 0:
                os.chown(d, self.uid, self.gid)
            d.chmod(0o700)
        if not (self.data / "PG_VERSION").is_file():
            self._initdb()
        chosen = self.port
        for attempt in range(3):
            self.port = chosen if chosen is not None else free_port()
            self._save_state()
            done = self._pg_ctl("start", "-w", "-t", str(_START_TIMEOUT), "-l", str(self.log_file),
                                "-o", self._options())
            if done.returncode == 0:
                break
            if chosen is not None or attempt == 2 or "could not bind" not in self._log_tail():
                raise EvoforgeError(f"PostgreSQL did not start in {self.dir}: "
                                    f"{done.stderr.strip() or done.stdout.strip()}\n"
                                    f"{self._log_tail()}")
        self._ensure_database()
        return self.url

    def stop(self) -> None:
        """Stop the server (fast shutdown: open connections are cut) if it runs; its data
        stays, and ``start()`` brings it back on the same port."""
        if (self.data / "postmaster.pid").exists():
            done = self._pg_ctl("stop", "-w", "-m", "fast", "-t", str(_START_TIMEOUT))
            if done.returncode != 0 and (self.data / "postmaster.pid").exists():
                self._pg_ctl("stop", "-w", "-m", "immediate", "-t", str(_START_TIMEOUT))

    def close(self) -> None:
        """Stop the server and remove the directory if this object made it (a temp dir)."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def restart(self) -> None:
        """Stop the server (fast: open connections are cut) and start it again, same port."""
        self.stop()
        self.start()

    def running(self) -> bool:
        return self._pg_ctl("status").returncode == 0

    def __enter__(self) -> LocalPostgres:
        self.start()
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # ------------------------------------------------------------------ plumbing

    def _options(self) -> str:
        sock = str(self.socket_dir) if len(str(self.socket_dir)) < 90 else ""
        opts = [f"-p {self.port}", "-c listen_addresses=127.0.0.1",
                f"-c unix_socket_directories='{sock}'"]
        opts += [f"-c {k}={v}" for k, v in self.settings.items()]
        return " ".join(opts)

    def _as_server_user(self, argv: list[str]) -> list[str]:
        if os.geteuid() != 0:
            return argv
        return ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups", "--",
                *argv]

    def _run(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C", "LANG": "C", "HOME": str(self.dir),
               "PGDATA": str(self.data)}
        return subprocess.run(self._as_server_user(argv), capture_output=True, text=True,
                              env=env, cwd=self.dir, check=False, stdin=subprocess.DEVNULL)

    def _pg_ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self._run([str(self.bin_dir / "pg_ctl"), "-D", str(self.data), *args])

    def _initdb(self) -> None:
        done = self._run([str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", SUPERUSER,
                          "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-instructions", "--no-sync"])
        if done.returncode != 0:
            raise EvoforgeError(f"initdb failed in {self.data}: {done.stderr.strip()[-2000:]}")
        # trust on loopback only (initdb's defaults also trust the unix socket, in our own dir)
        (self.data / "pg_hba.conf").write_text(
            "local all all trust\n"
            "host all all 127.0.0.1/32 trust\n")

    def _ensure_database(self) -> None:
        import psycopg

        admin = f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/postgres"
        with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                            (DATABASE,)).fetchone() is None:
                conn.execute(f"CREATE DATABASE {DATABASE}")

    def _check_reachable(self) -> None:
        """The server user must be able to enter every parent of the directory."""
        if os.geteuid() != 0:
            return
        for parent in self.dir.parents:
            st = parent.stat()
            if not (st.st_mode & 0o001 or st.st_uid == self.uid):
                raise EvoforgeError(
                    f"the PostgreSQL server user {self.user!r} cannot enter {parent} (mode "
                    f"{oct(st.st_mode & 0o777)}), a parent of {self.dir}: allow it (chmod o+x "
                    f"{parent}) or choose a directory directly under /tmp or /var/tmp")

    def _save_state(self) -> None:
        state = {"port": self.port, "bin_dir": str(self.bin_dir), "uid": self.uid,
                 "gid": self.gid, "user": self.user, "settings": self.settings}
        (self.dir / _STATE).write_text(json.dumps(state))

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-15:])
        return ""

    @classmethod
    def attach(cls, dir: str | Path) -> LocalPostgres:
        """The server a ``start --dir DIR`` left running (to stop or restart it)."""
        path = Path(dir).absolute()
        try:
            state = json.loads((path / _STATE).read_text())
        except (OSError, ValueError) as e:
            raise EvoforgeError(f"{path} holds no server started by evoforge.testing.postgres "
                                f"({e})") from e
        pg = cls(path, port=int(state["port"]), settings=state.get("settings") or {})
        pg.bin_dir = Path(state["bin_dir"])
        pg.uid, pg.gid, pg.user = int(state["uid"]), int(state["gid"]), str(state["user"])
        return pg


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evoforge.testing.postgres",
                                     description="A throwaway PostgreSQL server on loopback.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    start = sub.add_parser("start", help="start a server in DIR; prints its URL last")
    start.add_argument("--dir", required=True, type=Path)
    start.add_argument("--port", type=int, default=None)
    stop = sub.add_parser("stop", help="stop the server started in DIR")
    stop.add_argument("--dir", required=True, type=Path)
    args = parser.parse_args(argv)
    try:
        if args.cmd == "start":
            pg = LocalPostgres(args.dir, port=args.port)
            if (pg.dir / _STATE).is_file() and LocalPostgres.attach(pg.dir).running():
                pg = LocalPostgres.attach(pg.dir)  # already up: say where
                url = pg.url
            else:
                url = pg.start()
            print(f"PostgreSQL running as {pg.user} in {pg.dir} (log {pg.log_file})")
            print(url, flush=True)
        else:
            LocalPostgres.attach(args.dir).stop()
            print(f"PostgreSQL in {args.dir.absolute()} stopped", flush=True)
    except EvoforgeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
