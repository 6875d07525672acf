"""Attacks on the host, checked from outside: hostile candidates run by the installed CLI.

Each case starts ``evoforge run`` (the real entry point, as CI runs it: as root, and where the
machine allows also as an unprivileged user) on a problem whose program attacks the host from
inside its evaluation: remount the filesystem read-write and write a host file, unmount the
mounts that hide things (also from a nested user namespace), read ``/etc/shadow`` and a
root-only file the test creates, connect to pathname UNIX sockets the test listens on outside
the hidden directories, open and lock the live run database, read the problem's hidden data,
and SIGTERM every process it can see. The program reports what it managed (so a case cannot
pass because the attack never ran), and then the test checks from outside: the run finished
with its programs committed, no host file appeared, no listener was reached, no secret reached
any output, and the next evaluation still worked.

The process-survival case SIGKILLs the controller while a candidate's daemons run and finds
survivors by a cgroup the test puts the controller in (every descendant inherits it; nothing
the candidate does takes it out), never by process name.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from proc_tools import Cgroup, cgroup2_root

from evoforge.sandbox import bubblewrap_problem

ROOT = os.geteuid() == 0
EVOFORGE = str(Path(sys.executable).with_name("evoforge"))
SRC = Path(__file__).resolve().parents[1] / "src"
NOBODY = 65534

pytestmark = [
    pytest.mark.skipif(bubblewrap_problem() is not None,
                       reason=f"needs a working bubblewrap: {bubblewrap_problem()}"),
    pytest.mark.timeout(300),
]

ATTACK = r'''
import fcntl, json, os, socket, subprocess, sys, time

HOST_FILE = __HOST_FILE__
SECRETS = __SECRETS__
SOCKETS = __SOCKETS__
RUN_DIR = __RUN_DIR__
HIDDEN = __HIDDEN__
_held = []


def _try(fn):
    try:
        return "OK " + repr(fn())[:300]
    except BaseException as e:  # noqa: BLE001
        return "denied " + type(e).__name__


def _sh(cmd):
    try:
        done = subprocess.run(["/bin/sh", "-c", cmd], capture_output=True, timeout=10)
        return done.returncode
    except Exception as e:  # noqa: BLE001
        return type(e).__name__


def _connect(path):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(2)
    s.connect(path)
    s.sendall(b"pwned")
    return "connected"


def _lock():
    f = open(os.path.join(RUN_DIR, "evoforge.db-shm"), "rb")
    fcntl.lockf(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
    _held.append(f)
    return "locked"


def attack():
    r = {"uid": os.getuid()}
    r["remount"] = _sh("mount -o remount,bind,rw / || mount -o remount,rw /usr "
                       "|| umount -l /tmp || umount -l /usr")
    r["nested"] = _sh("unshare -Urm sh -c 'umount -l /tmp; mount -o remount,rw /usr; "
                      "touch /usr/evoforge-attack'")
    r["write"] = _try(lambda: open(HOST_FILE, "w").write("pwned"))
    for p in SECRETS:
        r["read " + p] = _try(lambda p=p: open(p).read())
    for p in SOCKETS:
        r["connect " + p] = _try(lambda p=p: _connect(p))
    r["hidden"] = _try(lambda: open(HIDDEN).read())
    r["rundir"] = _try(lambda: os.listdir(RUN_DIR))
    r["lock"] = _try(_lock)
    if _held:
        time.sleep(3)  # hold it while the controller writes
    r["kill"] = _try(lambda: os.kill(-1, 15))
    print("ATTACK-REPORT " + json.dumps(r), flush=True)


def solve(xs):
    # EVOLVE-BLOCK-START
    attempts = 1
    # EVOLVE-BLOCK-END
    for _ in range(attempts):
        attack()
    return sorted(xs)
'''

HARDENED_EVALUATOR = '''
import random


def evaluate(candidate):
    xs = [random.randint(-1000, 1000) for _ in range(20)]
    got = candidate.call("solve", xs, timeout=60)
    if type(got) is not list or got != sorted(xs):
        raise ValueError("wrong answer")
    return {"combined_score": 0.25}
'''

PLAIN_EVALUATOR = '''
import importlib.util
import random


def evaluate(program_path):
    spec = importlib.util.spec_from_file_location("candidate_program", program_path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    xs = [random.randint(-1000, 1000) for _ in range(20)]
    if mod.solve(xs) != sorted(xs):
        raise ValueError("wrong answer")
    return {"combined_score": 0.25}
'''


@dataclass
class Scene:
    """Everything one attack case sets up outside the sandbox, all of it marked by ``nonce``."""

    base: Path
    form: str
    nonce: str
    problem: Path
    run_dir: Path
    host_file: Path
    secret_file: Path
    secret: str
    hidden_secret: str
    sockets: list[Path]
    listeners: list[socket.socket]


def _listen(path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    os.chmod(path, 0o777)  # only visibility can protect it, not its permissions
    s.listen(4)
    s.setblocking(False)
    return s


@pytest.fixture
def scene(request: pytest.FixtureRequest) -> Iterator[Scene]:
    form = request.param
    nonce = secrets.token_hex(6)
    base = Path("/var/tmp") / f"evoforge-attack-{nonce}"  # outside /tmp, /home, /root
    base.mkdir(mode=0o755)
    hostdir = base / "hostdir"
    hostdir.mkdir()
    os.chmod(hostdir, 0o777)  # writable by anyone: only the sandbox's view protects it
    secret = f"SECRET-{nonce}"
    # a root-only file in a directory the sandbox shows (/usr): only the uid protects it
    secret_file = Path("/usr/local/share") / f"evoforge-attack-{nonce}.secret"
    secret_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, secret.encode())
    os.close(fd)
    problem = base / "problem"
    problem.mkdir()
    hidden_secret = f"HIDDEN-{nonce}"
    (problem / "hidden_data.txt").write_text(hidden_secret)
    run_dir = base / "run"
    run_dir.mkdir()
    run_socket_dir = Path("/run")
    sockets = [base / "host.sock"]
    if os.access(run_socket_dir, os.W_OK):
        sockets.append(run_socket_dir / f"evoforge-attack-{nonce}.sock")
    listeners = [_listen(p) for p in sockets]
    values = {
        "__HOST_FILE__": repr(str(hostdir / "pwned")),
        "__SECRETS__": repr(["/etc/shadow", str(secret_file)]),
        "__SOCKETS__": repr([str(p) for p in sockets]),
        "__RUN_DIR__": repr(str(run_dir)),
        "__HIDDEN__": repr(str(problem / "hidden_data.txt")),
    }
    program = ATTACK
    for key, value in values.items():
        program = program.replace(key, value)
    (problem / "initial_program.py").write_text(program)
    (problem / "evaluator.py").write_text(HARDENED_EVALUATOR if form == "hardened"
                                          else PLAIN_EVALUATOR)
    s = Scene(base, form, nonce, problem, run_dir, hostdir / "pwned", secret_file, secret,
              hidden_secret, sockets, listeners)
    try:
        yield s
    finally:
        for listener in listeners:
            listener.close()
        for p in sockets:
            p.unlink(missing_ok=True)
        secret_file.unlink(missing_ok=True)
        Path("/usr/evoforge-attack").unlink(missing_ok=True)
        shutil.rmtree(base, ignore_errors=True)


def _run_cli(scene: Scene, args: list[str], *, as_user: bool, python: str | None,
             timeout: float = 240) -> subprocess.CompletedProcess[str]:
    argv = [EVOFORGE, *args]
    if as_user:
        assert python is not None
        os.chown(scene.run_dir, NOBODY, NOBODY)
        argv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                python, "-m", "evoforge", *args]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(scene.base),
           "TMPDIR": "/tmp", "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=str(scene.base), check=False)


def _reports(run_dir: Path) -> tuple[list[dict[str, object]], list[str], int]:
    """The attack reports the candidates printed (from the stored artifacts), every stored
    text, and the number of programs stored ok."""
    from evoforge.storages import open_storage, resolve_storage_url

    storage = open_storage(resolve_storage_url(None, run_dir), readonly=True)
    reports: list[dict[str, object]] = []
    texts: list[str] = []
    ok = 0
    try:
        for p in storage.programs():
            ok += p.status.value == "ok"
            texts += [p.reason or "", *p.artifacts.values()]
            for text in p.artifacts.values():
                for line in text.splitlines():
                    if line.startswith("ATTACK-REPORT "):
                        reports.append(json.loads(line.removeprefix("ATTACK-REPORT ")))
    finally:
        storage.close()
    return reports, texts, ok


CASES = [("plain", False), ("hardened", False), ("plain", True), ("hardened", True)]


@pytest.mark.parametrize(
    ("scene", "as_user"), CASES, indirect=["scene"],
    ids=[f"{form}-{'unprivileged' if user else ('root' if ROOT else 'user')}"
         for form, user in CASES],
)
def test_candidate_has_no_power_over_the_host(scene: Scene, as_user: bool,
                                              request: pytest.FixtureRequest) -> None:
    python = request.getfixturevalue("unprivileged_python") if as_user else None
    form = scene.form
    done = _run_cli(scene, ["run", str(scene.problem), "--out", str(scene.run_dir),
                            "--max-programs", "3", "--workers", "1", "--quiet",
                            "--set", "evaluation.timeout=60", "--set", "evaluation.reverify=0"],
                    as_user=as_user, python=python)
    assert done.returncode == 0, done.stderr[-3000:]

    reports, texts, ok = _reports(scene.run_dir)
    assert ok >= 2, (ok, done.stderr[-2000:])  # the lock and the kill did not stop the run
    assert reports, f"the attack never ran: {texts[:3]}"  # so the checks below mean something
    for r in reports:
        assert r["uid"] != 0  # never root inside
        assert r["remount"] != 0 and r["nested"] != 0, r
        for key, value in r.items():
            if key.startswith(("write", "read ", "connect ", "lock")):
                assert str(value).startswith("denied"), (key, value)
        assert r["rundir"] in ("OK []", "denied FileNotFoundError"), r  # at most an empty dir
        if form == "hardened":
            assert str(r["hidden"]).startswith("denied"), r
    # from outside: nothing written, nothing reached, nothing leaked
    assert not scene.host_file.exists()
    assert not Path("/usr/evoforge-attack").exists()
    for listener in scene.listeners:
        with pytest.raises(BlockingIOError):
            listener.accept()
    outputs = "\n".join([done.stdout, done.stderr, *texts])
    for run_file in scene.run_dir.rglob("*"):
        if run_file.is_file():
            outputs += run_file.read_bytes().decode("utf-8", "replace")
    assert scene.secret not in outputs
    if form == "hardened":
        assert scene.hidden_secret not in outputs
    # the run is intact and readable afterwards
    status = _run_cli(scene, ["status", str(scene.run_dir)], as_user=False, python=None)
    assert status.returncode == 0, status.stderr


DAEMON = r'''
import os, subprocess, sys, time

MARK = __MARK__


def _daemon():
    # a double-forked, setsid'd daemon that ignores SIGTERM and SIGHUP
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            import signal
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(3600)", MARK])
        os._exit(0)


def solve(xs):
    # EVOLVE-BLOCK-START
    daemons = 2
    # EVOLVE-BLOCK-END
    for _ in range(daemons):
        _daemon()
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)", MARK],
                     start_new_session=True)
    time.sleep(3600)
    return sorted(xs)
'''


@pytest.mark.skipif(cgroup2_root() is None, reason="needs a writable cgroup v2 hierarchy (root)")
@pytest.mark.parametrize("scene", ["hardened", "plain"], indirect=True)
@pytest.mark.parametrize("sandbox", ["bubblewrap", "process"])
def test_nothing_outlives_a_killed_controller(scene: Scene, sandbox: str) -> None:
    mark = f"evoforge-daemon-{scene.nonce}"
    (scene.problem / "initial_program.py").write_text(DAEMON.replace("__MARK__", repr(mark)))
    group = Cgroup(f"kill-{scene.nonce}")
    try:
        argv = group.enter_argv([
            EVOFORGE, "run", str(scene.problem), "--out", str(scene.run_dir), "--quiet",
            "--max-programs", "50", "--workers", "2",
            "--set", f"evaluation.sandbox={sandbox}", "--set", "evaluation.timeout=600",
        ])
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                cwd=str(scene.base))
        # event: the candidates' daemons are up (found by the mark in their argv, inside
        # the test's own cgroup); then the controller dies without any chance to clean up
        deadline = time.monotonic() + 60
        while sum(mark.encode() in _cmdline(p) for p in group.pids()) < 2:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "the daemons never started"
            time.sleep(0.05)
        assert len(group.pids()) > 3
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        if proc.stderr:
            proc.stderr.close()
        survivors = group.pids() if not group.wait_empty(1.5) else []
        described = {p: _cmdline(p)[:120] for p in survivors}
        assert not survivors, f"survived the controller by over a second: {described}"
    finally:
        group.close()


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ")
    except OSError:
        return b""


def test_sandbox_user_exists_or_nobody() -> None:
    """The default sandbox user as root: evoforge-sandbox (made by setup) or nobody."""
    from evoforge.sandbox import SANDBOX_USERS, resolve_user

    if not ROOT:
        assert resolve_user("auto") is None
        return
    uid_gid = resolve_user("auto")
    assert uid_gid is not None and uid_gid[0] != 0
    names = [n for n in SANDBOX_USERS if _user_exists(n)]
    assert pwd.getpwnam(names[0]).pw_uid == uid_gid[0]


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False
