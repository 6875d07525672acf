"""The hardened form's persistent evaluator: one trusted evaluator process serves a slot's
evaluations, each against a fresh candidate process, and each starts from the same state.

Through the real ``LocalExecutor`` (default sandbox): the evaluator's pid stays the same across
evaluations while every candidate is a fresh process; files, environment, cwd, ``sys.path`` and
module globals an evaluation leaves behind are gone for the next one; each evaluation gets only
its own evaluator output; the CPU-time limit is per evaluation, not per process; after a
timeout or a crash a fresh evaluator takes over; ``persistent_evaluator=False`` starts one per
evaluation.
"""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import pytest

from evoforge.executors.local import LocalExecutor
from evoforge.program import EvalResult, Status

EVALUATOR = textwrap.dedent("""
    import os, sys, time

    COUNT = 0  # module globals: fresh for every evaluation


    def _process_identity():
        # pids repeat across sandboxes (each has its own PID namespace): the start time in
        # clock ticks since boot tells processes apart
        with open("/proc/self/stat") as f:
            return float(f.read().rsplit(")", 1)[1].split()[19])

    def evaluate(candidate):
        global COUNT
        COUNT += 1
        leftovers = sorted(os.listdir("."))
        inherited = os.environ.get("EVOFORGE_TEST_LEFTOVER", "")
        path_dirty = "/evoforge-test-leftover" in sys.path
        mode = candidate.call("mode", timeout=10)
        print(f"evaluator output of {candidate.call('token', timeout=10)}", file=sys.stderr)
        if mode == "burn":  # about 0.3 s of CPU in the evaluator itself
            t = time.process_time()
            while time.process_time() - t < 0.3:
                pass
        if mode == "hang":
            time.sleep(60)
        # leave a mess for the next evaluation
        with open("leftover.txt", "w") as f:
            f.write("x")
        os.makedirs("leftover_dir", exist_ok=True)
        os.environ["EVOFORGE_TEST_LEFTOVER"] = "1"
        sys.path.append("/evoforge-test-leftover")
        os.chdir("/")
        return {
            "combined_score": 1.0,
            "evaluator_pid": _process_identity(),
            "count": COUNT,
            "leftovers": len(leftovers),
            "inherited_env": float(bool(inherited)),
            "path_dirty": float(path_dirty),
            "candidate_calls": candidate.call("calls", timeout=10),
        }
""")

CANDIDATE = textwrap.dedent("""
    CALLS = 0

    def calls():
        global CALLS
        CALLS += 1
        return CALLS

    def mode():
        return "{mode}"

    def token():
        return "{token}"
""")


def _program(mode: str, token: str) -> str:
    return CANDIDATE.replace("{mode}", mode).replace("{token}", token)


@pytest.fixture
def problem(tmp_path: Path) -> Path:
    d = tmp_path / "problem"
    d.mkdir()
    (d / "evaluator.py").write_text(EVALUATOR)
    return d


def _run(problem: Path, programs: list[str], **kw: object) -> list[EvalResult]:
    async def go() -> list[EvalResult]:
        ex = LocalExecutor(problem, workers=1, memory_mb=512, **kw)  # type: ignore[arg-type]
        try:
            return [await ex.evaluate(p) for p in programs]
        finally:
            await ex.aclose()

    return asyncio.run(go())


def test_one_evaluator_serves_many_fresh_candidates(problem: Path) -> None:
    results = _run(problem, [_program("ok", f"T{i}") for i in range(4)], timeout=20)
    assert all(r.status is Status.OK for r in results), [(r.status, r.reason) for r in results]
    pids = {r.metrics["evaluator_pid"] for r in results}
    assert len(pids) == 1  # the same evaluator process
    for i, r in enumerate(results):
        assert r.metrics["candidate_calls"] == 1  # a fresh candidate process every time
        assert r.metrics["count"] == 1  # the evaluator module is loaded afresh
        assert r.metrics["leftovers"] == 0  # scratch cleaned
        assert r.metrics["inherited_env"] == 0 and r.metrics["path_dirty"] == 0
        err = r.artifacts.get("evaluator_stderr", "")
        assert f"evaluator output of T{i}" in err  # its own output, and only its own
        assert all(f"T{j}" not in err for j in range(4) if j != i), err


def test_the_cpu_limit_is_per_evaluation(problem: Path) -> None:
    # timeout 2 s -> a CPU budget of 3 s per evaluation; 12 x 0.3 s in one process exceeds it.
    # Each evaluation is a short burn well inside the 2 s wall-clock timeout, so a loaded
    # machine (a CPU shared with other work) does not turn the burn itself into a timeout.
    results = _run(problem, [_program("burn", f"B{i}") for i in range(12)], timeout=2)
    assert all(r.status is Status.OK for r in results), [(r.status, r.reason) for r in results]
    assert len({r.metrics["evaluator_pid"] for r in results}) == 1


def test_a_fresh_evaluator_after_a_timeout(problem: Path) -> None:
    results = _run(problem, [_program("ok", "A"), _program("hang", "H"), _program("ok", "C")],
                   timeout=2)
    assert [r.status for r in results] == [Status.OK, Status.TIMEOUT, Status.OK], \
        [(r.status, r.reason) for r in results]
    assert results[0].metrics["evaluator_pid"] != results[2].metrics["evaluator_pid"]


def test_without_persistence_each_evaluation_starts_its_own(problem: Path) -> None:
    results = _run(problem, [_program("ok", f"N{i}") for i in range(3)], timeout=20,
                   persistent_evaluator=False, warm_pool=False)
    assert all(r.status is Status.OK for r in results), [(r.status, r.reason) for r in results]
    assert all(r.metrics["count"] == 1 for r in results)
    assert len({r.metrics["evaluator_pid"] for r in results}) == 3  # three processes
