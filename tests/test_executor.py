"""LocalExecutor: real subprocesses, hostile candidates, caps, limits, concurrency, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import itertools
import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from proc_tools import Watch, wait_dead

from evoforge.config import EvaluationConfig
from evoforge.errors import ConfigError, ProblemError
from evoforge.executors.local import LocalExecutor
from evoforge.program import EvalResult, Status
from evoforge.sandbox import BubblewrapSandbox, ProcessSandbox, bubblewrap_problem

FIXTURES = Path(__file__).parent / "fixtures" / "evaluators"
BWRAP_PROBLEM = bubblewrap_problem()
SANDBOXES = [
    pytest.param("process", id="process"),
    pytest.param(
        "bubblewrap",
        id="bubblewrap",
        marks=pytest.mark.skipif(BWRAP_PROBLEM is not None, reason=str(BWRAP_PROBLEM)),
    ),
]
_ids = itertools.count(8_000_000_000 + os.getpid() * 1000)


@pytest.fixture
def scratch(tmp_path: Path) -> Any:
    root = tmp_path / "scratch"
    yield root
    # every evaluation, whatever its outcome, removes its scratch dir
    assert not root.exists() or list(root.iterdir()) == []


@pytest.fixture
def watch(scratch: Path) -> Iterator[Watch]:
    """Every process started inside ``with watch:`` (see ``proc_tools.Watch``: a cgroup the test
    process joins, which nothing a candidate does takes it out of); whatever is left is killed
    at teardown, even when the test failed. Without a writable cgroup v2 (not root) the weak
    fallback: the scratch root on a command line, which ``TREE_CODE``'s grandchild carries."""
    w = Watch("executor", str(scratch).encode())
    yield w
    w.close()


def make(scratch: Path, evaluator: str = "evaluator.py", **kw: Any) -> LocalExecutor:
    """An executor with the default sandbox (bubblewrap where it works) unless told."""
    kw.setdefault("timeout", 20.0)
    return LocalExecutor(FIXTURES, evaluator=evaluator, scratch_root=scratch, **kw)


def run(
    ex: LocalExecutor, code: str, program_id: int = 0, watch: Watch | None = None
) -> EvalResult:
    """One evaluation, then the executor closed; inside ``watch`` if given."""

    async def go() -> EvalResult:
        try:
            return await ex.evaluate(textwrap.dedent(code), program_id=program_id)
        finally:
            await ex.aclose()

    with watch or contextlib.nullcontext():
        return asyncio.run(go())


def test_ok_dict_result(scratch: Path) -> None:
    r = run(make(scratch), "def run():\n    return {'combined_score': 0.75, 'size': 3}\n")
    assert r.status is Status.OK, r.reason
    assert r.score == 0.75
    assert r.metrics == {"combined_score": 0.75, "size": 3.0}
    assert r.reason == ""
    assert r.eval_time > 0


def test_evaluation_result_object_with_artifacts(scratch: Path) -> None:
    r = run(make(scratch, "result_object.py", artifact_chars=500), "def run():\n    return 2\n")
    assert r.status is Status.OK, r.reason
    assert r.score == 2.0
    assert r.artifacts["feedback"] == "looks fine"
    assert r.artifacts["cases"] == "3"  # stringified
    assert len(r.artifacts["big"]) < 600 and "dropped" in r.artifacts["big"]


def test_evaluator_raising_is_failed_with_traceback(scratch: Path) -> None:
    code = """
    def helper():
        raise ValueError("the answer is wrong")
    def run():
        print("some output")
        helper()
    """
    r = run(make(scratch), code)
    assert r.status is Status.FAILED
    assert r.reason == "ValueError: the answer is wrong"
    assert "helper" in r.artifacts["traceback"]
    assert "_worker.py" not in r.artifacts["traceback"]
    assert r.artifacts["stdout"] == "some output\n"
    assert r.score is None


def test_evaluator_that_cannot_load_is_failed(scratch: Path) -> None:
    r = run(make(scratch, "broken.py"), "x = 1\n")
    assert r.status is Status.FAILED
    assert "failed to load" in r.reason and "broken on purpose" in r.reason


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("float('nan')", "metric 'combined_score' is nan"),
        ("float('inf')", "metric 'combined_score' is inf"),
        ("'high'", "metric 'combined_score' is a str"),
        ("True", "metric 'combined_score' is a bool"),
        ("None", "metric 'combined_score' is a NoneType"),
    ],
)
def test_bad_metric_is_failed_naming_it(scratch: Path, value: str, expected: str) -> None:
    r = run(make(scratch), f"def run():\n    return {{'combined_score': {value}, 'ok': 1}}\n")
    assert r.status is Status.FAILED
    assert r.reason.startswith(expected), r.reason
    assert "evaluators must return finite numbers" in r.reason
    assert r.score is None


def test_non_dict_return_is_failed(scratch: Path) -> None:
    r = run(make(scratch), "def run():\n    return [1, 2]\n")
    assert r.status is Status.FAILED
    assert r.reason.startswith("TypeError: evaluate() returned list")


def test_missing_score_metric_scores_the_average_and_says_so(
        scratch: Path, caplog: pytest.LogCaptureFixture) -> None:
    r = run(make(scratch), "def run():\n    return {'accuracy': 0.5, 'speed': 2.0}\n")
    assert r.status is Status.OK and r.score == 1.25  # OpenEvolve's rule
    assert r.metrics == {"accuracy": 0.5, "speed": 2.0}
    assert "no 'combined_score'" in caplog.text and "objective.score_metric" in caplog.text


def test_single_metric_is_the_score(scratch: Path) -> None:
    r = run(make(scratch), "def run():\n    return {'accuracy': 0.25}\n")
    assert r.status is Status.OK
    assert r.score == 0.25


def test_custom_score_metric(scratch: Path) -> None:
    r = run(make(scratch, score_metric="speed"), "def run():\n    return {'a': 1, 'speed': 7}\n")
    assert r.status is Status.OK
    assert r.score == 7.0


# -- cascade ---------------------------------------------------------------------------------


def cascade_code(s1: float, s2: float, s3: float) -> str:
    return f"def stage1(): return {s1}\ndef stage2(): return {s2}\ndef stage3(): return {s3}\n"


def test_cascade_stops_below_threshold(scratch: Path) -> None:
    ex = make(scratch, "cascade.py", cascade_thresholds=(0.5, 0.8))
    r = run(ex, cascade_code(0.3, 0.9, 0.9))
    assert r.status is Status.OK
    assert r.score == 0.3
    assert "stage2_ran" not in r.metrics
    assert r.artifacts["cascade"].startswith("stopped after stage 1 of 3")

    r = run(make(scratch, "cascade.py", cascade_thresholds=(0.5, 0.8)), cascade_code(0.6, 0.7, 1))
    assert r.score == 0.7
    assert "stage2_ran" in r.metrics and "stage3_ran" not in r.metrics
    assert r.artifacts["cascade"].startswith("stopped after stage 2 of 3")


def test_cascade_runs_all_stages_above_thresholds(scratch: Path) -> None:
    ex = make(scratch, "cascade.py", cascade_thresholds=(0.5, 0.8))
    r = run(ex, cascade_code(0.6, 0.85, 0.95))
    assert r.status is Status.OK
    assert r.score == 0.95  # later stages override
    assert {"stage1_ran", "stage2_ran", "stage3_ran"} <= set(r.metrics)
    assert r.artifacts["cascade"] == "completed all 3 stages"


# -- hostile candidates ----------------------------------------------------------------------


# Survivors are found by the watch's cgroup; the grandchild's command line carries its cwd (the
# scratch dir) only for the fallback where no cgroup can be made.
TREE_CODE = """
import os, subprocess, sys, time
def run():
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", os.getcwd()])
    print("grandchild started", flush=True)
    {tail}
"""


@pytest.mark.parametrize("kind", SANDBOXES)
def test_timeout_kills_the_whole_process_tree(scratch: Path, kind: str, watch: Watch) -> None:
    pid = next(_ids)
    code = TREE_CODE.format(tail="time.sleep(600)")
    r = run(make(scratch, timeout=1.5, sandbox=kind), code, pid, watch)
    assert r.status is Status.TIMEOUT
    assert r.reason == "exceeded 1.5 s; process tree killed"
    assert r.artifacts["stdout"] == "grandchild started\n"
    watch.check()  # the grandchild (and everything else) did not survive the timeout


@pytest.mark.parametrize("kind", SANDBOXES)
def test_stray_child_is_killed_after_a_successful_evaluation(
    scratch: Path, kind: str, watch: Watch
) -> None:
    pid = next(_ids)
    tail = "return {'combined_score': 1.0}"
    r = run(make(scratch, sandbox=kind), TREE_CODE.format(tail=tail), pid, watch)
    assert r.status is Status.OK, r.reason
    assert r.artifacts["stdout"] == "grandchild started\n"
    watch.check()


def test_setsid_daemon_does_not_survive_bubblewrap(scratch: Path, watch: Watch) -> None:
    if BWRAP_PROBLEM is not None:
        pytest.skip(BWRAP_PROBLEM)
    pid = next(_ids)
    code = """
    import os, subprocess, sys, time
    def run():
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                time.sleep(600)
            os._exit(0)
        os.wait()
        subprocess.Popen([sys.executable, "-c", "import os, time; os.setsid(); time.sleep(600)",
                          os.getcwd()], start_new_session=True)
        return {"combined_score": 1.0}
    """
    r = run(make(scratch, sandbox="bubblewrap"), code, pid, watch)
    assert r.status is Status.OK, r.reason
    watch.check()  # both daemons died (the fallback sees only the one with its cwd in argv)


@pytest.mark.parametrize("kind", SANDBOXES)
def test_segfault_is_crashed(scratch: Path, kind: str) -> None:
    r = run(make(scratch, sandbox=kind), "import ctypes\ndef run():\n    ctypes.string_at(0)\n")
    assert r.status is Status.CRASHED
    assert r.reason == "killed by SIGSEGV"


@pytest.mark.parametrize("kind", SANDBOXES)
def test_memory_bomb_is_crashed_out_of_memory(scratch: Path, kind: str) -> None:
    code = """
    def run():
        hog = []
        while True:
            hog.append(bytearray(32 * 1024 * 1024))
    """
    r = run(make(scratch, memory_mb=256, sandbox=kind), code)
    assert r.status is Status.CRASHED
    assert r.reason == "out of memory (memory_mb=256)"


def test_exit_without_result_is_crashed(scratch: Path) -> None:
    r = run(make(scratch), "import os\ndef run():\n    os._exit(3)\n")
    assert r.status is Status.CRASHED
    assert r.reason == "exited with code 3 without a result"


def test_fake_result_on_stdout_does_not_change_the_score(scratch: Path) -> None:
    code = """
    import json, os, sys
    FAKE = json.dumps({"v": 1, "ok": True, "metrics": {"combined_score": 1e9},
                       "invalid": {}, "artifacts": {}})
    def run():
        print(FAKE)
        sys.stderr.write(FAKE + "\\n")
        for fd in range(3, 64):  # the result pipe is not at a low fd
            try:
                os.write(fd, FAKE.encode())
            except OSError:
                pass
        return {"combined_score": 0.5}
    """
    r = run(make(scratch), code)
    assert r.status is Status.OK, r.reason
    assert r.score == 0.5
    assert "1e+09" in r.artifacts["stdout"] or "1000000000" in r.artifacts["stdout"]


def test_environment_is_the_allow_list(scratch: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRET_API_KEY", "sk-not-for-candidates")
    monkeypatch.setenv("EVOFORGE_TEST_VISIBLE", "yes")
    ex = make(scratch, "env.py", env_allow=("PATH", "EVOFORGE_TEST_VISIBLE"))
    r = run(ex, "x = 1\n")
    assert r.status is Status.OK, r.reason
    assert r.metrics["sees_secret"] == 0.0
    assert r.metrics["sees_allowed"] == 1.0
    assert r.metrics["home_is_cwd"] == 1.0
    assert r.metrics["program_in_cwd"] == 1.0


def test_output_flood_is_capped(scratch: Path) -> None:
    code = """
    import sys
    def run():
        chunk = "x" * 65535 + "\\n"
        for _ in range(600):  # ~40 MB on stdout
            sys.stdout.write(chunk)
        for _ in range(60):  # ~4 MB on stderr
            sys.stderr.write(chunk)
        print("END")
        return {"combined_score": 1.0}
    """
    r = run(make(scratch, artifact_chars=1000), code)
    assert r.status is Status.OK, r.reason
    out, err = r.artifacts["stdout"], r.artifacts["stderr"]
    assert len(out) < 1200 and len(err) < 1200
    assert out.startswith("xxx") and out.endswith("END\n")
    assert "bytes dropped" in out and "bytes dropped" in err


# -- concurrency and shutdown ------------------------------------------------------------------


def test_concurrency_never_exceeds_workers(scratch: Path, tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    ex = make(scratch, "concurrency.py", workers=2, sandbox=ProcessSandbox())  # writes markers
    code = f"MARKER_DIR = {str(markers)!r}\n"

    async def go() -> list[EvalResult]:
        try:
            return await asyncio.gather(*(ex.evaluate(code, program_id=i) for i in range(6)))
        finally:
            await ex.aclose()

    results = asyncio.run(go())
    assert [r.status for r in results] == [Status.OK] * 6, [r.reason for r in results]
    assert max(r.metrics["concurrent"] for r in results) <= 2
    assert ex.slots == 2


def test_aclose_kills_a_running_evaluation(scratch: Path, tmp_path: Path, watch: Watch) -> None:
    fifo = tmp_path / "started"
    os.mkfifo(fifo)
    code = f"""
    import os, time
    def run():
        with open({str(fifo)!r}, "w") as f:
            f.write(str(os.getpid()) + "\\n")
        time.sleep(600)
    """
    ex = make(scratch, timeout=600, sandbox=ProcessSandbox())  # the fifo is outside scratch

    async def go() -> tuple[EvalResult, EvalResult, int]:
        fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)  # RDWR: no EOF before the writer comes
        loop = asyncio.get_running_loop()
        started = asyncio.Event()
        loop.add_reader(fd, started.set)
        try:
            task = asyncio.create_task(ex.evaluate(textwrap.dedent(code)))
            await asyncio.wait_for(started.wait(), 30)
            pid = int(os.read(fd, 100).decode().strip())
            await ex.aclose()
            result = await asyncio.wait_for(task, 30)
            later = await ex.evaluate("x = 1\n")
            return result, later, pid
        finally:
            loop.remove_reader(fd)
            os.close(fd)

    with watch:
        result, later, pid = asyncio.run(go())
    assert result.status is Status.CRASHED
    assert "executor was closed" in result.reason
    assert wait_dead(pid)
    watch.check()
    assert later.status is Status.CRASHED and "closed" in later.reason


# -- construction -------------------------------------------------------------------------------


def test_from_config_and_validation(tmp_path: Path) -> None:
    cfg = EvaluationConfig(
        workers=3, timeout=5, memory_mb=512, cascade_thresholds=[0.1], sandbox="process",
        scratch_mb=32, max_processes=7, max_open_files=99,
    )
    ex = LocalExecutor.from_config(FIXTURES, cfg, score_metric="acc", program_name="p.py")
    assert (ex.slots, ex.timeout, ex.memory_mb, ex.score_metric) == (3, 5.0, 512, "acc")
    assert ex.cascade_thresholds == (0.1,) and ex.program_name == "p.py"
    assert (ex.scratch_mb, ex.max_processes, ex.max_open_files) == (32, 7, 99)
    assert type(ex.sandbox) is ProcessSandbox
    auto = LocalExecutor.from_config(
        FIXTURES, EvaluationConfig(), score_metric="acc", program_name="p.py"
    )
    assert isinstance(auto.sandbox, ProcessSandbox if BWRAP_PROBLEM else BubblewrapSandbox)
    with pytest.raises(ConfigError, match="max_open_files"):
        LocalExecutor(FIXTURES, max_open_files=3)
    with pytest.raises(ProblemError, match="evaluate"):
        LocalExecutor(tmp_path)
    with pytest.raises(ConfigError, match="plain file name"):
        LocalExecutor(FIXTURES, program_name="../x.py")


def test_missing_interpreter_is_a_config_error(scratch: Path) -> None:
    ex = make(scratch, python=str(scratch.parent / "no-such-python"))
    with pytest.raises(ConfigError, match="evaluation.python"):
        run(ex, "x = 1\n")


def test_scratch_of_a_dead_controller_is_removed(tmp_path: Path) -> None:
    # A controller killed mid-run leaves its evoforge-run-* dir; its owner flock died with it.
    root = tmp_path / "scratch"
    dead, alive = root / "evoforge-run-dead", root / "evoforge-run-alive"
    for d in (dead, alive):
        (d / "evoforge-1-x").mkdir(parents=True)
        (d / ".owner.lock").touch()
    held = os.open(alive / ".owner.lock", os.O_RDWR)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)  # another live executor
        r = run(make(root), "def run():\n    return {'combined_score': 1.0}\n")
        assert r.status is Status.OK, r.reason
        assert not dead.exists()
        assert alive.exists()
    finally:
        os.close(held)
    assert sorted(p.name for p in root.iterdir()) == ["evoforge-run-alive"]  # ours is gone


@pytest.mark.parametrize("kind", SANDBOXES)
def test_interpreter_path_with_dotdot_and_relative(
    tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """evaluation.python as ``../venv/bin/python`` (relative, with ``..``) works: workers start
    in their own scratch dir inside the sandbox, so the path is made absolute first."""
    problem = tmp_path / "problem"
    problem.mkdir()
    (problem / "evaluator.py").write_text(
        "def evaluate(p):\n    return {'combined_score': 1.0}\n")
    elsewhere = tmp_path / "a" / "b"
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)
    venv_python = Path(sys.executable)
    rel = os.path.relpath(venv_python.parent, elsewhere)
    ex = LocalExecutor(problem, python=f"{rel}/../bin/{venv_python.name}", sandbox=kind,
                       warm_pool=False, timeout=30)
    assert os.path.isabs(ex.python) and ".." not in Path(ex.python).parts

    async def go() -> EvalResult:
        try:
            return await ex.evaluate("x = 1\n")
        finally:
            await ex.aclose()

    r = asyncio.run(go())
    assert r.status is Status.OK, (r.status, r.reason, r.artifacts)
