"""The hostile suite: candidates that hang, bomb, escape or forge, through the real executor.

Each case is a small candidate under ``tests/hostile/``, run by :class:`LocalExecutor` with a
plain-form evaluator (``evaluator.py``: the candidate runs inside the evaluator's process) and
with a hardened-form evaluator (``hardened_evaluator.py``: the candidate runs in its own sandbox
and is called through the JSON channel; the candidates written for the plain form get a
``solve`` that calls their ``run`` once). Score-forgery cases that need the hardened form run
only there; ``test_plain_form_is_fooled`` shows the same forgeries fool a plain evaluator.

For every case, under the default sandbox (bubblewrap where it works) and under the process
sandbox: the executor returns a terminal status with a reason (it never raises), no score is
credited to a hack (hacks that work return 1e9, or a wrong answer the hardened evaluator would
score 0.25), no process of the evaluation survives, its scratch dir is gone, nothing outside
changed, and the next evaluation still works. Isolation cases that only bubblewrap provides are
skipped under the process sandbox, saying so; ``setsid_daemon`` under the process sandbox must
pass where evoforge can put each evaluation in a cgroup (:class:`evoforge.sandbox.Lifeline`,
root) and is a strict expected failure elsewhere (its daemon escapes the process-group kill, as
the sandbox module documents).

Survivors are found by a cgroup v2 group the test process joins for the evaluations
(:class:`proc_tools.Watch`): every process started then - workers, bwrap, whatever a candidate
forks, under any session, user, name or PID namespace - is in it and cannot leave it; whatever
is left in it afterwards survived, and is killed there (``cgroup.kill``) even when the test
fails. ``test_the_survivor_check_sees_survivors`` keeps the check honest by breaking the kill.
Where no writable cgroup v2 hierarchy exists (not root) the check falls back to the test's
scratch root in /proc/*/cmdline, which only bubblewrap's processes carry: the process sandbox's
survivors are then invisible, and the cases that need to see them are skipped, saying so.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import itertools
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from proc_tools import Survived, Watch, cgroup2_root, cmdline, wait_dead

from evoforge.executors.local import LocalExecutor
from evoforge.program import EvalResult, Status
from evoforge.sandbox import BubblewrapSandbox, Lifeline, ProcessSandbox, bubblewrap_problem

HOSTILE = Path(__file__).parent / "hostile"
HACKED = 1e6  # hostile candidates return 1e9 when their attack worked
BWRAP_PROBLEM = bubblewrap_problem()
_ids = itertools.count(7_000_000_000 + os.getpid() * 1000)


@dataclass(frozen=True)
class Case:
    name: str
    statuses: frozenset[Status]
    reason: str = ""  # substring of the reason (any of " | "-separated alternatives)
    score: float | None = None  # expected score when the status is OK
    bwrap_only: str = ""  # why the process sandbox cannot pass this case
    timeout: float = 2.0
    forms: tuple[str, ...] = ("plain", "hardened")
    hardened_reason: str | None = None  # the reason under the hardened form, if different


def case(name: str, *statuses: Status, **kw: Any) -> Case:
    return Case(name, frozenset(statuses), **kw)


T, C, F, OK = Status.TIMEOUT, Status.CRASHED, Status.FAILED, Status.OK
HARD = ("hardened",)
NO_NET = "the process sandbox does not isolate the network"
NO_FS = "the process sandbox does not isolate the filesystem"
CASES = [
    # liveness
    case("busy_loop", T, reason="exceeded 2.0 s"),
    case("sleep_forever", T, reason="exceeded 2.0 s"),
    case("ignore_sigterm", T, reason="exceeded 2.0 s"),
    case("catch_everything", T, reason="exceeded 2.0 s"),
    case("memory_bomb", C, reason="out of memory (memory_mb=256)"),
    case("huge_allocation", C, reason="out of memory (memory_mb=256)"),
    case("fork_bomb", T, F, C),
    case("setsid_daemon", OK, score=0.25),
    case("stray_threads", OK, score=0.25),
    case("disk_fill", F, reason="File too large | No space left on device"),
    case("disk_fill_many_files", F, reason="No space left on device",
         bwrap_only="the process sandbox caps each file, not the scratch dir's total"),
    case("fd_exhaustion", F, reason="Too many open files"),
    case("output_flood", OK, score=0.25),
    case("bad_bytes", OK, score=0.25),
    case("read_stdin", OK, score=0.25),
    case("segfault", C, reason="killed by SIGSEGV"),
    case("deep_recursion", F, C, reason="RecursionError | SIGSEGV | out of memory"),
    # isolation
    case("network_external", F, reason="OSError", bwrap_only=NO_NET),
    case("network_loopback", F, reason="ConnectionRefused | unreachable", bwrap_only=NO_NET),
    case("env_secret", OK, score=0.25),
    case("proc_of_parent", F, OK, bwrap_only="the process sandbox shares the PID namespace"),
    case("write_outside", F, reason="PermissionError", bwrap_only=NO_FS),
    case("kill_everything", OK, score=0.25,
         bwrap_only="kill(-1) outside a PID namespace would hit every process of this user"),
    case("symlink_trap", OK, score=0.25),
    # score forgery
    case("exit_before_work", C, reason="exited with code 0 without a result",
         hardened_reason="process ended during the call (exit code 0)"),
    case("fake_result", OK, score=0.25),
    case("nested_result", F, C, reason="not valid JSON | process ended | more than max_bytes"),
    # score forgery against the hardened form (the evaluator checks solve(xs) == sorted(xs))
    case("eq_always_true", F, reason="not a JSON value", forms=HARD),
    case("list_subclass_eq", F, reason="wrong answer", forms=HARD),
    case("nan_answer", F, reason="non-finite number (nan)", forms=HARD),
    case("inf_answer", F, reason="non-finite number (inf)", forms=HARD),
    case("patched_clock", F, reason="too slow", timeout=10.0, forms=HARD),
    case("patch_checker", F, reason="wrong answer", forms=HARD),
    case("flaky_answer", F, reason="wrong answer", forms=HARD),
    case("cached_per_seed", F, reason="wrong answer", forms=HARD),
    case("prewritten_result", F, reason="wrong answer", forms=HARD),
    case("oversized_result", F, reason="more than max_bytes=1000000", forms=HARD),
    case("exit_in_call", C, reason="process ended during the call (exit code 0)", forms=HARD),
]
HARDENED_SHIM = """

_evoforge_ran = []


def solve(xs):
    if not _evoforge_ran:
        _evoforge_ran.append(run())
    return sorted(xs)
"""

BENIGN = {
    "plain": "def run():\n    return {'combined_score': 0.5}\n",
    "hardened": "def solve(xs):\n    return sorted(xs)\n",
}
BENIGN_SCORE = {"plain": 0.5, "hardened": 0.25}
SANDBOXES = {"auto": "default", "process": "process"}  # kind -> test id
#: cases whose processes the process sandbox cannot kill (module docstring of evoforge.sandbox)
PROCESS_SANDBOX_LEAKS = {"setsid_daemon"}
LEAKS = pytest.mark.xfail(
    strict=True, raises=Survived, reason="the process sandbox cannot kill setsid daemons"
)


@pytest.fixture
def listener() -> Any:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.setblocking(False)
    yield sock
    sock.close()


PARAMS = [
    pytest.param(
        c, form, kind, id=f"{c.name}-{form}-{kind_id}",
        marks=[LEAKS] if kind == "process" and c.name in PROCESS_SANDBOX_LEAKS
        and not Lifeline.available() else [],
    )
    for kind, kind_id in SANDBOXES.items() for c in CASES for form in ("plain", "hardened")
    if form in c.forms
]


@pytest.mark.parametrize(("c", "form", "kind"), PARAMS)
def test_hostile(
    c: Case,
    form: str,
    kind: str,
    tmp_path: Path,
    listener: socket.socket,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    executor_sandbox = ProcessSandbox() if kind == "process" else None
    if kind == "process" and c.bwrap_only:
        pytest.skip(f"{c.name}: {c.bwrap_only} (checked under bubblewrap)")
    if c.bwrap_only and BWRAP_PROBLEM is not None:
        pytest.skip(f"{c.name} needs bubblewrap: {BWRAP_PROBLEM}")

    problem = tmp_path / "problem"
    problem.mkdir()
    evaluator_file = "hardened_evaluator.py" if form == "hardened" else "evaluator.py"
    shutil.copy(HOSTILE / evaluator_file, problem / "evaluator.py")
    evaluator_before = (problem / "evaluator.py").read_bytes()
    outside = tmp_path / "run" / "outside.txt"
    outside.parent.mkdir()
    outside_dir = tmp_path / "kept"
    outside_dir.mkdir()
    (outside_dir / "canary").write_text("keep me")
    scratch_root = tmp_path / "scratch"
    with open("/proc/self/cmdline", "rb") as f:
        my_digest = hashlib.sha256(f.read()).hexdigest()
    code = (
        (HOSTILE / f"{c.name}.py").read_text()
        .replace("__PORT__", str(listener.getsockname()[1]))
        .replace("__PARENT_PID__", str(os.getpid()))
        .replace("__PARENT_DIGEST__", my_digest)
        .replace("__PROBLEM_DIR__", str(problem))
        .replace("__OUTSIDE_DIR__", str(outside_dir))
        .replace("__OUTSIDE__", str(outside))
    )
    if form == "hardened" and "def solve(" not in code:
        code += HARDENED_SHIM
    monkeypatch.setenv("EVOFORGE_HOSTILE_SECRET", "sk-hostile-not-for-candidates")
    sentinel = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    ex = LocalExecutor(
        problem,
        sandbox=executor_sandbox,
        timeout=c.timeout,
        memory_mb=256,
        scratch_mb=8,
        max_processes=32,
        max_open_files=64,
        artifact_chars=2000,
        scratch_root=scratch_root,
    )
    assert ex.form == form
    program_id = next(_ids)
    # every process of both evaluations is in watch's cgroup (the fallback: scratch in cmdline)
    watch = Watch(f"hostile-{c.name}", str(scratch_root).encode())

    async def go() -> tuple[EvalResult, EvalResult]:
        try:
            hostile = await ex.evaluate(code, program_id=program_id)
            benign = await ex.evaluate(BENIGN[form])
            return hostile, benign
        finally:
            await ex.aclose()

    try:
        if kind == "process" and c.name in PROCESS_SANDBOX_LEAKS and not watch.sees_all:
            pytest.skip("no writable cgroup v2 (not root): the test cannot see, nor then kill, "
                        "the process sandbox's daemons")
        with watch:
            r, after = asyncio.run(go())
        survivors = {pid: cmdline(pid) for pid in watch.survivors()}
        assert sentinel.poll() is None, "a process outside the evaluation was killed"
    finally:
        sentinel.kill()
        sentinel.wait()
        assert sentinel.stdin is not None
        sentinel.stdin.close()
        watch.close()  # kills whatever is left in the group, even when the test failed

    expected = ProcessSandbox if kind == "process" or BWRAP_PROBLEM else BubblewrapSandbox
    assert type(ex.sandbox) is expected
    assert r.status in c.statuses, (r.status, r.reason, r.artifacts)
    if r.status is not Status.OK:
        assert r.reason, "a terminal status without a reason"
        assert r.score is None
    reason = c.hardened_reason if form == "hardened" and c.hardened_reason else c.reason
    if reason:
        assert any(alt in r.reason for alt in reason.split(" | ")), r.reason
    if r.status is Status.OK and c.score is not None:
        assert r.score == c.score
    assert r.score is None or r.score < HACKED, f"a hack was credited: {r.score}"
    # nothing of it is left, and the executor still works
    assert not scratch_root.exists() or list(scratch_root.iterdir()) == []
    assert after.status is Status.OK and after.score == BENIGN_SCORE[form], after.reason
    assert (problem / "evaluator.py").read_bytes() == evaluator_before
    assert not outside.exists()
    assert sorted(p.name for p in outside_dir.iterdir()) == ["canary"]
    assert (outside_dir / "canary").read_text() == "keep me"
    with pytest.raises(BlockingIOError):
        listener.accept()  # nothing reached the test's loopback listener

    for stream in ("stdout", "stderr"):
        assert len(r.artifacts.get(stream, "")) < 2200  # captured with a cap
    if c.name == "output_flood":
        assert "bytes dropped" in r.artifacts["stdout"] and "bytes dropped" in r.artifacts["stderr"]
    if c.name == "bad_bytes":
        out = r.artifacts["stdout"]
        assert "\ufffd" in out and out.endswith(" end\n")
    # last, so that the expected failure of a leaking case still checks everything above
    if survivors:
        raise Survived(f"processes of the evaluation survived it: {survivors}")


@pytest.mark.parametrize("name", ["eq_always_true", "patched_clock", "patch_checker"])
def test_plain_form_is_fooled(name: str, tmp_path: Path) -> None:
    """The control for the hardened cases above: the same checks in the plain form
    (``plain_sort_evaluator.py``) credit these wrong or slow answers, which is why the run
    records a plain evaluator's integrity as unprotected."""
    problem = tmp_path / "problem"
    problem.mkdir()
    shutil.copy(HOSTILE / "plain_sort_evaluator.py", problem / "evaluator.py")
    ex = LocalExecutor(problem, timeout=10.0, memory_mb=256, scratch_root=tmp_path / "scratch")
    assert ex.form == "plain"

    async def go() -> EvalResult:
        try:
            return await ex.evaluate((HOSTILE / f"{name}.py").read_text())
        finally:
            await ex.aclose()

    r = asyncio.run(go())
    assert r.status is Status.OK and r.score == 0.25, (r.status, r.reason)


class NoKillProcessSandbox(ProcessSandbox):
    """Broken on purpose: kills nothing."""

    def kill_tree(self, proc: asyncio.subprocess.Process) -> None:
        pass


class NoKillBubblewrapSandbox(BubblewrapSandbox):
    """Broken on purpose: kills nothing."""

    def kill_tree(self, proc: asyncio.subprocess.Process) -> None:
        pass


OUTLIVES = """
import os, time


def run():
    if os.fork() == 0:  # a setsid daemon, out of the worker's session and process group
        os.setsid()
        time.sleep(3600)
    time.sleep(3600)  # and the worker itself, past its timeout
"""


@pytest.mark.skipif(cgroup2_root() is None, reason="needs a writable cgroup v2 hierarchy (root); "
                    "the command-line fallback cannot see the process sandbox's workers")
@pytest.mark.parametrize("kind", ["process", "bubblewrap"])
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # broken on purpose:
# the event loop closes while the processes its kill missed are still running, and says so
def test_the_survivor_check_sees_survivors(kind: str, tmp_path: Path) -> None:
    """The control for the survivor check of ``test_hostile``: with a sandbox whose kill is
    broken on purpose, the worker and its setsid daemon outlive the evaluation, and the check
    finds them - under bubblewrap as another user in another PID namespace, with no mark on
    their command line - and closing the watch kills them."""
    if kind == "bubblewrap" and BWRAP_PROBLEM is not None:
        pytest.skip(BWRAP_PROBLEM)
    problem = tmp_path / "problem"
    problem.mkdir()
    shutil.copy(HOSTILE / "evaluator.py", problem / "evaluator.py")
    sandbox = NoKillBubblewrapSandbox() if kind == "bubblewrap" else NoKillProcessSandbox()
    ex = LocalExecutor(problem, sandbox=sandbox, timeout=1.0, memory_mb=256, warm_pool=False,
                       scratch_root=tmp_path / "scratch")
    watch = Watch("detector", b"unused: a cgroup is required")

    async def go() -> EvalResult:
        try:
            return await ex.evaluate(OUTLIVES)
        finally:
            await ex.aclose()

    try:
        with watch:
            r = asyncio.run(go())
        survivors = watch.survivors(settle=1.0)
        namespaces = {_pid_ns(pid) for pid in survivors}
        with pytest.raises(Survived):
            watch.check(settle=0.0)
    finally:
        watch.close()
        ex = go = None  # type: ignore[assignment]  # what still tracks the killed-late processes goes now, under this test's
        gc.collect()  # warning filter, not at the end of the session
    assert r.status is Status.TIMEOUT, (r.status, r.reason)
    assert len(survivors) >= 2, f"the broken kill left no visible survivor: {survivors}"
    if kind == "bubblewrap":
        assert namespaces - {"", os.readlink("/proc/self/ns/pid")}, "none seen inside bwrap"
    assert all(wait_dead(p, 10) for p in survivors), "closing the watch did not kill them"
    assert watch.group is not None and not os.path.exists(watch.group.path)


def _pid_ns(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return ""
