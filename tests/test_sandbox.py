"""Sandboxes on their own: choosing one, what bubblewrap isolates, killing (`doctor`: test_doctor.py)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import select
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from evoforge import sandbox
from evoforge.errors import ConfigError
from evoforge.sandbox import (
    BubblewrapSandbox,
    ProcessSandbox,
    Sandbox,
    bubblewrap_problem,
    make_sandbox,
)

BWRAP_PROBLEM = bubblewrap_problem()
needs_bwrap = pytest.mark.skipif(BWRAP_PROBLEM is not None, reason=str(BWRAP_PROBLEM))
EXE = Path(sys.executable)
READABLE = [EXE.parent.parent, EXE.resolve().parent.parent, Path(sys.prefix),
            Path(sys.base_prefix)]


# -- choosing a sandbox ----------------------------------------------------------------------


def test_make_sandbox_by_name() -> None:
    assert type(make_sandbox("process")) is ProcessSandbox
    with pytest.raises(ConfigError, match="auto, bubblewrap, process"):
        make_sandbox("docker")


def test_missing_bubblewrap(monkeypatch: pytest.MonkeyPatch, caplog: Any) -> None:
    real_which = shutil.which
    monkeypatch.setattr(sandbox.shutil, "which",
                        lambda name, **kw: None if name == "bwrap" else real_which(name, **kw))
    problem = sandbox.bubblewrap_problem.__wrapped__()  # the uncached probe
    assert problem is not None and "apt-get install bubblewrap" in problem
    with pytest.raises(ConfigError, match="apt-get install bubblewrap"):
        BubblewrapSandbox()

    monkeypatch.setattr(sandbox, "bubblewrap_problem", lambda *a, **k: problem)
    with pytest.raises(ConfigError, match="evaluation.sandbox=process"):
        make_sandbox("bubblewrap")
    monkeypatch.setattr(sandbox, "_warned", False)
    with caplog.at_level(logging.WARNING, logger="evoforge.sandbox"):
        assert type(make_sandbox("auto")) is ProcessSandbox
        assert type(make_sandbox()) is ProcessSandbox
    warnings = [r.getMessage() for r in caplog.records if r.name == "evoforge.sandbox"]
    assert len(warnings) == 1  # one loud warning per process, not one per evaluation
    for missing in ("network", "filesystem", "PID namespace"):
        assert missing in warnings[0]


@needs_bwrap
def test_auto_is_bubblewrap_where_it_works() -> None:
    assert type(make_sandbox("auto")) is BubblewrapSandbox
    assert type(make_sandbox("bubblewrap")) is BubblewrapSandbox


def test_bubblewrap_exit_status_is_decoded() -> None:
    assert BubblewrapSandbox("/bin/true").exit_status(128 + 11) == -11
    assert BubblewrapSandbox("/bin/true").exit_status(3) == 3
    assert ProcessSandbox().exit_status(139) == 139


# -- what bubblewrap isolates --------------------------------------------------------------


async def _spawn(sb: Sandbox, code: str, cwd: Path, **kw: Any) -> tuple[int | None, str, bytes]:
    """Run ``python -c code`` in ``sb``; returns (exit status, stdout, what arrived on fd 3+)."""
    out_r, out_w = os.pipe()
    res_r, res_w = os.pipe()
    try:
        proc = await sb.spawn(
            [sys.executable, "-I", "-c", textwrap.dedent(code), str(res_w)],
            cwd=cwd,
            env=kw.pop("env", {"PATH": "/usr/bin:/bin", "ONLY_THIS": "1"}),
            pass_fds=(res_w,),
            stdout=out_w,
            stderr=out_w,
            readable=READABLE + kw.pop("readable", []),
            **kw,
        )
    finally:
        os.close(out_w)
        os.close(res_w)
    try:
        await asyncio.wait_for(proc.wait(), 30)
        with os.fdopen(out_r, "rb") as f:
            out = f.read().decode()
        with os.fdopen(res_r, "rb") as f:
            res = f.read()
    finally:
        sb.kill_tree(proc)
        assert await sb.wait_gone(proc, 10)
        sb.release(proc)
    return sb.exit_status(proc.returncode), out, res


PROBE = """
import json, os, socket, sys
facts = {"env": dict(os.environ), "cwd": os.getcwd(), "files": sorted(os.listdir(".")),
         "pid": os.getpid(), "root": os.listdir("/root") if os.path.isdir("/root") else []}
try:
    socket.create_connection(("127.0.0.1", int(os.environ.get("PORT", "1"))), timeout=2)
    facts["net"] = "connected"
except OSError as e:
    facts["net"] = type(e).__name__
for name, path in (("etc", "/etc/evoforge-test"), ("readable", os.environ.get("RO", "/x"))):
    try:
        open(path, "w").close()
        facts[name] = "written"
    except OSError as e:
        facts[name] = type(e).__name__
try:
    with open("big", "wb") as f:
        f.write(b"x" * (3 * 1024 * 1024))
    facts["big"] = "written"
except OSError as e:
    facts["big"] = e.strerror
os.write(int(sys.argv[1]), b"result pipe works")
print(json.dumps(facts))
"""


@needs_bwrap
def test_bubblewrap_isolates(tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (scratch / "program.py").write_text("x = 1\n")
    ro_dir = tmp_path / "problem"
    ro_dir.mkdir()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        listener.setblocking(False)
        env = {"PATH": "/usr/bin:/bin", "PORT": str(listener.getsockname()[1]),
               "RO": str(ro_dir / "evaluator.py")}
        os.environ["EVOFORGE_TEST_LEAK"] = "must not be seen"
        try:
            status, out, res = asyncio.run(
                _spawn(BubblewrapSandbox(), PROBE, scratch, env=env, readable=[ro_dir],
                       scratch_mb=2)
            )
        finally:
            del os.environ["EVOFORGE_TEST_LEAK"]
        with pytest.raises(BlockingIOError):
            listener.accept()  # nothing reached the listener
    assert status == 0, out
    facts = json.loads(out)
    assert res == b"result pipe works"  # pass_fds survive bwrap
    # exactly the given environment (+ PWD from bwrap, LC_CTYPE from Python's C-locale coercion)
    assert {k: v for k, v in facts["env"].items() if k not in ("PWD", "LC_CTYPE")} == env
    assert facts["cwd"] == str(scratch) and facts["files"] == ["program.py"]
    assert facts["net"] in ("ConnectionRefusedError", "OSError")
    # read-only (and, as root, not the writer's uid either)
    assert facts["etc"] in ("OSError", "PermissionError")
    assert facts["readable"] in ("OSError", "PermissionError")
    assert not (ro_dir / "evaluator.py").exists()
    assert facts["big"] == "No space left on device"  # the 2 MB scratch cap
    assert facts["pid"] < 10  # own PID namespace
    assert all(name.startswith(".") for name in facts["root"])  # only re-bound paths show
    assert list(scratch.iterdir()) == [scratch / "program.py"]  # writes stayed inside


@pytest.mark.parametrize("kind", ["process", pytest.param("bubblewrap", marks=needs_bwrap)])
def test_signal_death_is_a_negative_status(tmp_path: Path, kind: str) -> None:
    code = "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n"
    status, _, _ = asyncio.run(_spawn(make_sandbox(kind), code, tmp_path))
    assert status == -11


@needs_bwrap
def test_kill_tree_kills_setsid_daemons(tmp_path: Path) -> None:
    code = """
    import os, subprocess, sys, time
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", "MARK"],
                             start_new_session=True, stdout=subprocess.DEVNULL)
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            time.sleep(600)
        os._exit(0)
    os.wait()
    print(child.pid, flush=True)
    time.sleep(600)
    """
    sb = BubblewrapSandbox()

    async def go() -> tuple[int, bool]:
        out_r, out_w = os.pipe()
        proc = await sb.spawn(
            [sys.executable, "-I", "-c", textwrap.dedent(code)], cwd=tmp_path,
            env={"PATH": "/usr/bin:/bin"}, pass_fds=(), stdout=out_w, stderr=out_w,
            readable=READABLE,
        )
        os.close(out_w)
        loop = asyncio.get_running_loop()
        with os.fdopen(out_r, "rb") as f:
            line = await asyncio.wait_for(loop.run_in_executor(None, f.readline), 30)
            assert line.strip().isdigit(), line
            outer = [p for p in _children_pids(proc.pid)]
            sb.kill_tree(proc)
            gone = await sb.wait_gone(proc, 10)
            sb.release(proc)
            rest = f.read()  # EOF: nobody holds the pipe any more
        assert rest == b""
        return len(outer), gone

    n, gone = asyncio.run(go())
    assert gone and n >= 1


def _children_pids(pid: int) -> list[int]:
    """Descendants of ``pid`` (seen from here), via /proc/*/stat."""
    parents: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    parents[int(name)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    out, frontier = [], [pid]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parents.items() if pp == p]
        out += kids
        frontier += kids
    return out


def test_process_sandbox_kill_tree_kills_the_group(tmp_path: Path) -> None:
    sb = ProcessSandbox()

    async def go() -> int:
        out_r, out_w = os.pipe()
        proc = await sb.spawn(
            [sys.executable, "-c",
             "import subprocess, sys, time\n"
             "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
             "print(c.pid, flush=True)\ntime.sleep(600)\n"],
            cwd=tmp_path, env={"PATH": "/usr/bin:/bin"}, pass_fds=(), stdout=out_w,
            stderr=out_w,
        )
        os.close(out_w)
        loop = asyncio.get_running_loop()
        with os.fdopen(out_r, "rb") as f:
            child = int(await asyncio.wait_for(loop.run_in_executor(None, f.readline), 30))
            sb.kill_tree(proc)
            assert await sb.wait_gone(proc, 10)
            sb.release(proc)
        return child

    child = asyncio.run(go())
    fd = os.pidfd_open(child) if os.path.exists(f"/proc/{child}") else None
    if fd is not None:
        try:
            assert select.select([fd], [], [], 10)[0], "the grandchild survived"
        finally:
            os.close(fd)


# -- orphans of a dead controller --------------------------------------------------------------


@needs_bwrap
@pytest.mark.skipif(os.getuid() != 0 or not shutil.which("unshare"), reason="needs root + unshare")
def test_orphaned_sandbox_init_is_reaped(tmp_path: Path) -> None:
    # A stand-in for a sandbox init whose bwrap died: pid 1 of its own PID namespace, named
    # bwrap, parent not a bwrap. A live sandbox with the same marker is left alone.
    marker = f"evoforge-orphan-test-{os.getpid()}"
    stand_in = f"import time; print('up', flush=True); time.sleep(600)  # {marker}"
    orphan = subprocess.Popen(
        ["unshare", "--pid", "--fork", "bash", "-c",
         f'exec -a bwrap {sys.executable} -I -c "{stand_in}"'],
        stdout=subprocess.PIPE,
    )
    assert orphan.stdout is not None
    assert orphan.stdout.readline() == b"up\n"
    sb = BubblewrapSandbox()

    async def go() -> tuple[list[int], int | None]:
        out_r, out_w = os.pipe()
        proc = await sb.spawn(
            [sys.executable, "-I", "-c", "print('up', flush=True); import time; time.sleep(600)",
             marker], cwd=tmp_path, env={"PATH": "/usr/bin:/bin"}, pass_fds=(), stdout=out_w,
            stderr=out_w, readable=READABLE,
        )
        os.close(out_w)
        loop = asyncio.get_running_loop()
        with os.fdopen(out_r, "rb") as f:
            assert await asyncio.wait_for(loop.run_in_executor(None, f.readline), 30) == b"up\n"
            killed = sandbox.reap_orphaned_sandboxes(marker)
            still_running = proc.returncode
            sb.kill_tree(proc)
            await sb.wait_gone(proc, 10)
            sb.release(proc)
        return killed, still_running

    try:
        killed, live_status = asyncio.run(go())
        assert len(killed) == 1
        assert orphan.wait(timeout=30) != 0  # unshare exits once its child was killed
        assert live_status is None  # the live sandbox was not touched
    finally:
        orphan.kill()
        orphan.wait()
        orphan.stdout.close()


def _rustup_home() -> Path | None:
    rustc = shutil.which("rustc")
    if rustc is None:
        return None
    home = Path(os.environ.get("RUSTUP_HOME", Path(rustc).resolve().parents[2] / ".rustup"))
    return home if home.is_dir() else None


@needs_bwrap
@pytest.mark.skipif(_rustup_home() is None, reason="no rustup toolchain on this machine")
def test_a_toolchain_outside_usr_works_through_sandbox_paths(tmp_path: Path) -> None:
    """A rustup toolchain (under /root as root) is invisible by default and works once its
    directories are shown with ``sandbox_paths``, compiled and run as the sandbox user."""
    rustc = Path(shutil.which("rustc") or "")
    cargo_home = rustc.resolve().parents[1]
    rustup_home = _rustup_home()
    assert rustup_home is not None
    (tmp_path / "m.rs").write_text('fn main() { println!("compiled in the sandbox"); }\n')
    env = {"PATH": f"{rustc.parent}:/usr/bin:/bin", "HOME": str(tmp_path),
           "TMPDIR": str(tmp_path), "RUSTUP_HOME": str(rustup_home),
           "CARGO_HOME": str(cargo_home)}
    script = "rustc -O m.rs -o m 2>&1 && ./m"

    async def build(sb: BubblewrapSandbox) -> tuple[int | None, str]:
        r, w = os.pipe()
        try:
            proc = await sb.spawn(["/bin/sh", "-c", script], cwd=tmp_path, env=env, pass_fds=[],
                                  stdout=w, stderr=w, scratch_mb=512)
        finally:
            os.close(w)
        try:
            await asyncio.wait_for(proc.wait(), 120)
            with os.fdopen(r, "rb") as f:
                return proc.returncode, f.read().decode("utf-8", "replace")
        finally:
            sb.kill_tree(proc)
            sb.release(proc)

    shown = BubblewrapSandbox(extra_paths=[str(rustup_home), str(cargo_home)])
    status, out = asyncio.run(build(shown))
    assert status == 0 and "compiled in the sandbox" in out, out
    if not str(rustup_home).startswith("/usr/"):
        status, out = asyncio.run(build(BubblewrapSandbox()))
        assert status != 0, out  # not visible without sandbox_paths


ROOT_ONLY_PROBE = """
import json, os

def evaluate(program_path):
    facts = {"uid": os.getuid(), "caps": open("/proc/self/status").read().split("CapEff:")[1].split()[0]}
    for name, path in (("shadow", "/etc/shadow"), ("secret", os.environ.get("SECRET", "/x"))):
        try:
            open(path).read()
            facts[name] = "read"
        except OSError as e:
            facts[name] = type(e).__name__
    with open("written.txt", "w") as f:  # scratch stays writable for the sandbox user
        f.write("x")
    print("FACTS " + json.dumps(facts))
    return {"combined_score": 1.0}
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="only root switches users")
@pytest.mark.skipif(not os.path.exists("/usr/bin/python3"), reason="needs a system Python 3")
def test_process_sandbox_as_root_runs_as_the_sandbox_user(tmp_path: Path) -> None:
    """The process sandbox is the weak one, but as root it still drops root: the worker runs
    as the sandbox user with no capabilities, so root-only files stay unreadable, and the
    evaluator reads the problem dir (a snapshot) even when the original is root-only."""
    from evoforge.executors.local import LocalExecutor
    from evoforge.program import Status

    problem = tmp_path / "problem"
    problem.mkdir(mode=0o700)
    (problem / "evaluator.py").write_text(ROOT_ONLY_PROBE)
    os.chmod(problem / "evaluator.py", 0o600)
    secret = tmp_path / "root-only.txt"
    secret.write_text("s3cret")
    os.chmod(secret, 0o600)
    ex = LocalExecutor(problem, python="/usr/bin/python3", sandbox="process", timeout=30,
                       env_allow=["PATH", "SECRET"], warm_pool=False)
    assert ex.sandbox.user is not None and ex.sandbox.user[0] != 0
    os.environ["SECRET"] = str(secret)
    try:
        async def go() -> Any:
            try:
                return await ex.evaluate("x = 1\n")
            finally:
                await ex.aclose()

        r = asyncio.run(go())
    finally:
        del os.environ["SECRET"]
    assert r.status is Status.OK, (r.status, r.reason, r.artifacts)
    line = next(x for x in r.artifacts["stdout"].splitlines() if x.startswith("FACTS "))
    facts = json.loads(line.removeprefix("FACTS "))
    assert facts["uid"] == ex.sandbox.user[0] and facts["caps"] == "0000000000000000"
    assert facts["shadow"] == "PermissionError" and facts["secret"] == "PermissionError"


@pytest.mark.skipif(os.geteuid() != 0, reason="only root switches users")
def test_process_sandbox_as_root_says_when_it_cannot_drop_root(tmp_path: Path) -> None:
    """An interpreter the sandbox user cannot run: an explicit sandbox_user is an error that
    names the fix; auto falls back to root with a warning."""
    from evoforge.executors.local import LocalExecutor

    hidden = tmp_path / "hidden"
    hidden.mkdir(mode=0o700)  # like /root: the sandbox user cannot enter it
    python = hidden / "python3"
    python.write_text(f"#!/bin/sh\nexec {sys.executable} \"$@\"\n")
    python.chmod(0o755)
    (tmp_path / "evaluator.py").write_text("def evaluate(p):\n    return {'combined_score': 1}\n")
    with pytest.raises(ConfigError, match="sandbox_user=root"):
        LocalExecutor(tmp_path, python=str(python), sandbox="process",
                      sandbox_user="evoforge-sandbox" if _has_user("evoforge-sandbox") else "nobody")
    ex = LocalExecutor(tmp_path, python=str(python), sandbox="process")
    assert ex.sandbox.user is None


def _has_user(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False
