"""The hardened evaluator form end to end: ``evaluate(candidate)`` through the real executor.

Each test writes a small evaluator into ``tmp_path/problem/evaluator.py`` and runs candidates
through :class:`LocalExecutor` (the candidate in its own sandbox, called over the JSON channel
by :class:`evoforge.candidate.Candidate`). Evaluators record what they saw in an ``obs``
artifact (JSON) so the assertions live here, in the test. Every run also checks that no process
of the evaluation survives and that its scratch dirs are gone.

The default sandbox (bubblewrap where it works) is used throughout; ``test_call_values`` runs
under the process sandbox as well.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import textwrap
from pathlib import Path
from typing import Any

import pytest
from proc_tools import procs_with, wait_dead

from evoforge.executors.local import LocalExecutor
from evoforge.problem import evaluator_form
from evoforge.program import EvalResult, Status
from evoforge.sandbox import BubblewrapSandbox, ProcessSandbox, bubblewrap_problem

BWRAP_PROBLEM = bubblewrap_problem()

# Prepended to every evaluator: ``report(score, obs)`` returns the score plus what the
# evaluator observed, as the JSON artifact ``obs``.
PRELUDE = """\
import json
import math
import os
import sys

from evoforge.candidate import Candidate, CandidateCrashed, CandidateError, CandidateTimeout


class _Report:
    def __init__(self, score, obs):
        self.metrics = {"combined_score": score}
        self.artifacts = {"obs": json.dumps(obs)}


def report(score, obs):
    return _Report(score, obs)

"""


def evaluate_all(
    tmp_path: Path,
    evaluator: str,
    codes: list[str],
    *,
    timeout: float = 10.0,
    **kw: Any,
) -> list[EvalResult]:
    """Evaluate ``codes`` one after another with ``evaluator`` in one event loop."""
    problem = tmp_path / "problem"
    problem.mkdir(exist_ok=True)
    (problem / "evaluator.py").write_text(PRELUDE + textwrap.dedent(evaluator))
    scratch = tmp_path / "scratch"
    ex = LocalExecutor(
        problem,
        timeout=timeout,
        memory_mb=256,
        scratch_root=scratch,
        artifact_chars=20_000,
        **kw,
    )
    assert ex.form == "hardened"
    sandbox = kw.get("sandbox")
    default = BubblewrapSandbox if BWRAP_PROBLEM is None else ProcessSandbox
    assert type(ex.sandbox) is (ProcessSandbox if sandbox == "process" else default)

    async def go() -> list[EvalResult]:
        try:
            return [await ex.evaluate(code) for code in codes]
        finally:
            await ex.aclose()

    results = asyncio.run(go())
    survivors = [pid for pid in procs_with(str(scratch).encode()) if not wait_dead(pid)]
    assert not survivors, f"processes of the evaluation survived: {survivors}"
    assert not scratch.exists() or list(scratch.iterdir()) == []
    return results


def evaluate_one(tmp_path: Path, evaluator: str, code: str, **kw: Any) -> EvalResult:
    return evaluate_all(tmp_path, evaluator, [code], **kw)[0]


def obs_of(r: EvalResult) -> dict[str, Any]:
    assert r.status is Status.OK, (r.status, r.reason, r.artifacts)
    obs: dict[str, Any] = json.loads(r.artifacts["obs"])
    return obs


# -- 1. form detection ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "form"),
    [
        pytest.param("def evaluate(candidate):\n    return {}\n", "hardened", id="evaluate-candidate"),
        pytest.param("def evaluate(program_path):\n    return {}\n", "plain", id="evaluate-path"),
        pytest.param(
            "def evaluate_stage1(candidate):\n    return {}\n\n"
            "def evaluate_stage2(candidate):\n    return {}\n",
            "hardened",
            id="stage1-candidate",
        ),
        pytest.param(  # the stages are the entry point when both exist, in the worker too
            "def evaluate_stage1(program_path):\n    return {}\n\n"
            "def evaluate(candidate):\n    return {}\n",
            "plain",
            id="stage1-wins-over-evaluate",
        ),
        pytest.param("def evaluate(cand):\n    return {}\n", "plain", id="other-name"),
    ],
)
def test_form_detection(source: str, form: str, tmp_path: Path) -> None:
    (tmp_path / "evaluator.py").write_text(source)
    assert evaluator_form(tmp_path / "evaluator.py") == form
    ex = LocalExecutor(tmp_path, scratch_root=tmp_path / "scratch")
    assert ex.form == form


def test_stages_share_one_candidate(tmp_path: Path) -> None:
    """``evaluate_stage1(candidate)`` runs hardened end to end; every stage gets the same live
    candidate process (its module state carries over from stage 1 to stage 2)."""
    evaluator = """
    def evaluate_stage1(candidate):
        assert type(candidate).__name__ == "Candidate"
        return {"combined_score": 0.5, "first": candidate.call("tick")}

    def evaluate_stage2(candidate):
        return {"combined_score": 0.75, "second": candidate.call("tick")}
    """
    code = "n = 0\n\ndef tick():\n    global n\n    n += 1\n    return n\n"
    r = evaluate_one(tmp_path, evaluator, code)
    assert r.status is Status.OK, (r.reason, r.artifacts)
    assert r.metrics == {"combined_score": 0.75, "first": 1, "second": 2}
    assert r.score == 0.75
    assert r.artifacts["cascade"] == "completed all 2 stages"


# -- 2. call: arguments and values ----------------------------------------------------------

VALUES_EVALUATOR = """
def evaluate(candidate):
    v = candidate.call("f", 1, [2, {"k": "v"}], c={"d": [1.5, None]})
    default = candidate.call("f", "only", b=True)
    return report(1.0, {
        "repr": repr(v),
        "default_repr": repr(default),
        "source": candidate.source,
        "program_name": candidate.program_name,
        "isinstance": isinstance(candidate, Candidate),
        "alive": candidate.alive,
        "calls": candidate.calls,
        "last_elapsed": candidate.last_elapsed,
    })
"""

VALUES_CODE = """\
import numpy as np


def f(a, b, *, c=None):
    return {
        "args": (a, b),
        "c": c,
        "nested": {"l": [1, [2, (3, 4)]], "n": None, "t": True, "s": "é"},
        "arr": np.arange(3),
        "mat": np.eye(2),
        "i": np.int64(7),
        "x": np.float32(0.5),
        "b": np.bool_(True),
    }
"""


@pytest.mark.parametrize("sandbox", [None, "process"], ids=["default", "process"])
def test_call_values(sandbox: str | None, tmp_path: Path) -> None:
    r = evaluate_one(tmp_path, VALUES_EVALUATOR, VALUES_CODE, sandbox=sandbox)
    obs = obs_of(r)
    assert r.score == 1.0
    expected = {
        "args": [1, [2, {"k": "v"}]],
        "c": {"d": [1.5, None]},
        "nested": {"l": [1, [2, [3, 4]]], "n": None, "t": True, "s": "é"},
        "arr": [0, 1, 2],
        "mat": [[1.0, 0.0], [0.0, 1.0]],
        "i": 7,
        "x": 0.5,
        "b": True,
    }
    # repr tells tuples from lists and numpy scalars/arrays from plain ints/floats/lists
    assert obs["repr"] == repr(expected)
    assert obs["default_repr"] == repr(
        {**expected, "args": ["only", True], "c": None}
    )
    assert obs["source"] == VALUES_CODE
    assert obs["program_name"] == "program.py"
    assert obs["isinstance"] is True
    assert obs["alive"] is True
    assert obs["calls"] == 2
    assert obs["last_elapsed"] > 0
    assert "traceback" not in r.artifacts


# -- 3. allow_nan ---------------------------------------------------------------------------

NAN_CODE = "def f():\n    return {'x': [1.0, float('nan')], 'y': float('-inf')}\n"


def test_nan_rejected_by_default(tmp_path: Path) -> None:
    evaluator = """
    def evaluate(candidate):
        candidate.call("f")
        return {"combined_score": 1.0}
    """
    r = evaluate_one(tmp_path, evaluator, NAN_CODE)
    assert r.status is Status.FAILED, (r.status, r.reason)
    assert "non-finite" in r.reason and "f()" in r.reason, r.reason
    assert r.score is None


def test_nan_accepted_with_allow_nan(tmp_path: Path) -> None:
    evaluator = """
    def evaluate(candidate):
        try:
            candidate.call("f")
            rejected = ""
        except CandidateError as e:
            rejected = str(e)
        alive = candidate.alive  # a rejected value does not end the candidate
        v = candidate.call("f", allow_nan=True)
        ok = math.isnan(v["x"][1]) and v["x"][0] == 1.0 and math.isinf(v["y"]) and v["y"] < 0
        return report(1.0 if ok else 0.0, {"rejected": rejected, "alive": alive})
    """
    r = evaluate_one(tmp_path, evaluator, NAN_CODE)
    obs = obs_of(r)
    assert r.score == 1.0
    assert "non-finite" in obs["rejected"]
    assert obs["alive"] is True


# -- 4. call timeout ------------------------------------------------------------------------

SLOW_CODE = "import time\n\ndef slow():\n    time.sleep(30)\n\ndef fast():\n    return 1\n"


def test_call_timeout_caught(tmp_path: Path) -> None:
    evaluator = """
    def evaluate(candidate):
        obs = {"fast_before": candidate.call("fast")}
        try:
            candidate.call("slow", timeout=0.5)
        except CandidateTimeout as e:
            obs["timeout"] = [type(e).__name__, str(e), isinstance(e, CandidateError)]
        obs["alive"] = candidate.alive
        try:
            candidate.call("fast")
        except CandidateCrashed as e:
            obs["after"] = [type(e).__name__, str(e)]
        return report(0.125, obs)
    """
    r = evaluate_one(tmp_path, evaluator, SLOW_CODE)
    obs = obs_of(r)
    assert r.score == 0.125
    assert obs["fast_before"] == 1
    assert obs["timeout"] == ["CandidateTimeout", "slow() did not return within 0.5 s", True]
    assert obs["alive"] is False
    assert obs["after"][0] == "CandidateCrashed"
    assert "unusable" in obs["after"][1] and "slow() timed out" in obs["after"][1]


def test_call_timeout_uncaught(tmp_path: Path) -> None:
    evaluator = """
    def evaluate(candidate):
        candidate.call("slow", timeout=0.5)
        return {"combined_score": 1.0}
    """
    r = evaluate_one(tmp_path, evaluator, SLOW_CODE)
    assert r.status is Status.TIMEOUT, (r.status, r.reason)
    assert "slow() did not return within 0.5 s" in r.reason
    assert "exceeded" not in r.reason  # the call's timeout, not the executor's deadline
    assert r.score is None


# -- 5. the candidate raises; 6. missing function -------------------------------------------

RAISING_CODE = """\
def helper(x):
    raise ValueError(f"bad input {x}")


def boom(x):
    return helper(x)


def give_set():
    return {1, 2}


def ok():
    return "fine"


CONST = 3
"""


def test_candidate_exception_caught(tmp_path: Path) -> None:
    evaluator = """
    def evaluate(candidate):
        obs = {}
        try:
            candidate.call("boom", 3)
        except CandidateError as e:
            obs["boom"] = [type(e).__name__, str(e), e.traceback]
        obs["alive_after_raise"] = candidate.alive
        obs["ok_after_raise"] = candidate.call("ok")
        for name in ("nope", "CONST", "give_set"):
            try:
                candidate.call(name)
            except CandidateError as e:
                obs[name] = [type(e).__name__, str(e)]
        try:
            candidate.call("ok", {1, 2})
        except CandidateError as e:
            obs["bad_arg"] = ["CandidateError", str(e)]
        except ValueError as e:
            obs["bad_arg"] = [type(e).__name__, str(e)]
        obs["alive_at_end"] = candidate.alive
        obs["ok_at_end"] = candidate.call("ok")
        return report(1.0, obs)
    """
    obs = obs_of(evaluate_one(tmp_path, evaluator, RAISING_CODE))
    etype, message, tb = obs["boom"]
    assert etype == "CandidateError"
    assert message == "boom() raised ValueError: bad input 3"
    assert "program.py" in tb and "in helper" in tb and "ValueError: bad input 3" in tb
    assert obs["alive_after_raise"] is True and obs["ok_after_raise"] == "fine"
    # 6. a missing or non-callable name is the candidate's error, naming the function
    assert obs["nope"][0] == "CandidateError" and "nope()" in obs["nope"][1], obs["nope"]
    assert "defines no function nope()" in obs["nope"][1]
    assert obs["CONST"][0] == "CandidateError" and "CONST()" in obs["CONST"][1]
    # a non-JSON return value is refused on the candidate side
    assert obs["give_set"][0] == "CandidateError" and "not a JSON value" in obs["give_set"][1]
    # arguments that are not JSON are the evaluator's own bug: ValueError, nothing sent
    assert obs["bad_arg"][0] == "ValueError" and "not JSON-serialisable" in obs["bad_arg"][1]
    assert obs["alive_at_end"] is True and obs["ok_at_end"] == "fine"


def test_candidate_exception_uncaught(tmp_path: Path) -> None:
    evaluator = """
    def evaluate(candidate):
        candidate.call("boom", 3)
        return {"combined_score": 1.0}
    """
    r = evaluate_one(tmp_path, evaluator, RAISING_CODE)
    assert r.status is Status.FAILED, (r.status, r.reason)
    assert "ValueError" in r.reason and "bad input 3" in r.reason, r.reason
    assert r.score is None
    tb = r.artifacts["traceback"]  # the candidate's, which is what the next prompt needs
    assert "program.py" in tb and "in helper" in tb
    assert "evaluator.py" not in tb
    assert "evaluator.py" in r.artifacts["evaluator_traceback"]


def test_missing_function_uncaught(tmp_path: Path) -> None:
    evaluator = """
    def evaluate(candidate):
        return {"combined_score": candidate.call("solve")}
    """
    present, missing = evaluate_all(
        tmp_path, evaluator, ["def solve():\n    return 0.5\n", "def other():\n    return 0.5\n"]
    )
    assert present.status is Status.OK and present.score == 0.5, present.reason
    assert missing.status is Status.FAILED, (missing.status, missing.reason)
    assert "solve()" in missing.reason and "no function" in missing.reason, missing.reason


def test_program_that_fails_to_import(tmp_path: Path) -> None:
    evaluator = """
    def evaluate(candidate):
        return {"combined_score": candidate.call("solve")}
    """
    r = evaluate_one(tmp_path, evaluator, "def solve(:\n    return 1\n")
    assert r.status is Status.FAILED, (r.status, r.reason)
    assert "SyntaxError" in r.reason and "solve()" in r.reason, r.reason


# -- 7. max_bytes ---------------------------------------------------------------------------


def test_max_bytes(tmp_path: Path) -> None:
    evaluator = """
    def evaluate(candidate):
        obs = {"small": len(candidate.call("big", 100, max_bytes=1000))}
        try:
            candidate.call("big", 5000, max_bytes=1000)
        except CandidateError as e:
            obs["big"] = [type(e).__name__, str(e)]
        obs["alive"] = candidate.alive
        try:
            candidate.call("big", 1)
        except CandidateCrashed as e:
            obs["after"] = type(e).__name__
        return report(1.0, obs)
    """
    obs = obs_of(evaluate_one(tmp_path, evaluator, "def big(n):\n    return 'x' * n\n"))
    assert obs["small"] == 100
    assert obs["big"][0] == "CandidateError"
    assert "max_bytes=1000" in obs["big"][1] and "big()" in obs["big"][1], obs["big"]
    assert obs["alive"] is False  # the oversized reply was never read: the channel is dropped
    assert obs["after"] == "CandidateCrashed"


# -- 8. run(), write_file(), read_file() ----------------------------------------------------


def test_run_commands(tmp_path: Path) -> None:
    evaluator = """
    def evaluate(candidate):
        obs = {}
        r = candidate.run(["sh", "-c", "echo hi; echo err >&2; exit 3"])
        obs["sh"] = [r.returncode, r.stdout, r.stderr, r.timed_out, r.elapsed >= 0]
        py = "import os, sys; print(sorted(os.listdir('.'))); print(sys.stdin.read().upper())"
        r = candidate.run([sys.executable, "-c", py], input="abc")
        obs["py"] = [r.returncode, r.stdout, r.stderr, r.timed_out]
        r = candidate.run(["sleep", "30"], timeout=0.5)
        obs["sleep"] = [r.returncode, r.timed_out]
        obs["alive_after_sleep"] = candidate.alive
        try:
            candidate.run(["evoforge-no-such-command"])
        except CandidateError as e:
            obs["missing"] = [type(e).__name__, str(e)]
        obs["after"] = candidate.run(["sh", "-c", "echo still"]).stdout
        obs["program_called"] = candidate.call("solve")
        return report(1.0, obs)
    """
    obs = obs_of(evaluate_one(tmp_path, evaluator, "def solve():\n    return 'called'\n"))
    assert obs["sh"] == [3, "hi\n", "err\n", False, True]
    code, out, err, timed_out = obs["py"]
    assert (code, err, timed_out) == (0, "", False), obs["py"]
    listing, upper = out.splitlines()
    assert "program.py" in listing  # cwd is the candidate's scratch dir
    assert upper == "ABC"
    assert obs["sleep"] == [None, True]
    assert obs["alive_after_sleep"] is True
    assert obs["missing"][0] == "CandidateError", obs["missing"]
    assert "evoforge-no-such-command" in obs["missing"][1]
    assert obs["after"] == "still\n"
    assert obs["program_called"] == "called"


def test_write_and_read_files(tmp_path: Path) -> None:
    evaluator = """
    def evaluate(candidate):
        obs = {}
        candidate.write_file("bench.txt", "line1\\nline2 é\\n")
        obs["back"] = candidate.read_file("bench.txt")
        obs["cat"] = candidate.run(["cat", "bench.txt"]).stdout
        obs["seen_by_candidate"] = candidate.call("read_bench")
        candidate.call("make_output")
        obs["out"] = candidate.read_file("out.txt")
        obs["head"] = candidate.read_file("bench.txt", max_bytes=5)
        obs["evaluator_cwd"] = sorted(os.listdir("."))
        bad = []
        for name in ("a/b.txt", "../x", "", ".", ".."):
            for op in ("write", "read"):
                try:
                    if op == "write":
                        candidate.write_file(name, "x")
                    else:
                        candidate.read_file(name)
                    bad.append([op, name, "accepted"])
                except ValueError as e:
                    bad.append([op, name, type(e).__name__])
        obs["bad"] = bad
        try:
            candidate.read_file("missing.txt")
        except CandidateError as e:
            obs["missing"] = [type(e).__name__, str(e)]
        obs["alive"] = candidate.alive
        return report(1.0, obs)
    """
    code = (
        "def read_bench():\n    with open('bench.txt') as f:\n        return f.read()\n\n\n"
        "def make_output():\n    with open('out.txt', 'w') as f:\n        f.write('from candidate')\n"
    )
    obs = obs_of(evaluate_one(tmp_path, evaluator, code))
    text = "line1\nline2 é\n"
    assert obs["back"] == text
    assert obs["cat"] == text
    assert obs["seen_by_candidate"] == text
    assert obs["out"] == "from candidate"
    assert obs["head"] == "line1"
    # the files live in the candidate's sandbox, not the evaluator's working directory
    assert "bench.txt" not in obs["evaluator_cwd"] and "program.py" not in obs["evaluator_cwd"]
    assert all(outcome == "ValueError" for _, _, outcome in obs["bad"]), obs["bad"]
    assert len(obs["bad"]) == 10
    assert obs["missing"][0] == "CandidateError" and "FileNotFoundError" in obs["missing"][1]
    assert obs["alive"] is True


def test_read_file_of_control_characters(tmp_path: Path) -> None:
    evaluator = """
    def evaluate(candidate):
        candidate.call("write_bytes")
        try:
            got = candidate.read_file("out.bin", max_bytes=1000)
        except CandidateError as e:
            return report(0.0, {"error": str(e), "alive": candidate.alive})
        return report(1.0, {"got": got, "alive": candidate.alive})
    """
    code = (
        "def write_bytes():\n"
        "    with open('out.bin', 'wb') as f:\n"
        "        f.write(bytes(range(1, 9)) * 125)\n"  # 1000 bytes: within max_bytes
    )
    obs = obs_of(evaluate_one(tmp_path, evaluator, code))
    assert obs.get("error") is None, obs["error"]
    assert obs["got"] == "".join(map(chr, range(1, 9))) * 125
    assert obs["alive"] is True


def test_read_file_keeps_carriage_returns(tmp_path: Path) -> None:
    evaluator = """
    def evaluate(candidate):
        candidate.write_file("t.txt", "a\\r\\nb\\rc")
        return report(1.0, {
            "read": candidate.read_file("t.txt"),
            "cat": candidate.run(["cat", "t.txt"]).stdout,
        })
    """
    obs = obs_of(evaluate_one(tmp_path, evaluator, "x = 1\n"))
    assert obs["cat"] == "a\r\nb\rc"  # the file itself is right
    assert obs["read"] == "a\r\nb\rc"


# -- 9. a C candidate compiled inside its sandbox ---------------------------------------------

C_GOOD = """\
#include <stdio.h>

int main(void) {
    int n;
    if (scanf("%d", &n) != 1) return 2;
    long s = 0;
    for (int i = 1; i <= n; i++) s += i;
    printf("%ld\\n", s);
    return 0;
}
"""
C_BAD = "int main(void) { return evoforge_undefined_symbol; }\n"


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")
def test_c_program_compiled_in_the_candidate_sandbox(tmp_path: Path) -> None:
    evaluator = """
    def evaluate(candidate):
        obs = {"program_name": candidate.program_name, "source": candidate.source}
        cc = candidate.run(["gcc", "-O1", "-o", "prog", candidate.program_name], timeout=60)
        obs["cc"] = [cc.returncode, cc.stderr]
        if cc.returncode != 0:
            return report(0.0, obs)
        r = candidate.run(["./prog"], input="100\\n", timeout=10)
        obs["run"] = [r.returncode, r.stdout]
        try:
            candidate.call("main")
        except CandidateError as e:
            obs["call"] = str(e)
        return report(1.0 if r.stdout.strip() == "5050" else 0.0, obs)
    """
    good, bad = evaluate_all(
        tmp_path, evaluator, [C_GOOD, C_BAD], program_name="program.c", timeout=60.0
    )
    obs = obs_of(good)
    assert good.score == 1.0
    assert obs["program_name"] == "program.c" and obs["source"] == C_GOOD
    assert obs["cc"][0] == 0, obs["cc"]
    assert obs["run"] == [0, "5050\n"]
    assert "main()" in obs["call"]  # a C program cannot be called as Python: an error, not a crash
    bad_obs = obs_of(bad)
    assert bad.score == 0.0
    assert bad_obs["cc"][0] != 0 and "evoforge_undefined_symbol" in bad_obs["cc"][1]


# -- 10. candidate output -----------------------------------------------------------------------


def test_candidate_output_becomes_artifacts(tmp_path: Path) -> None:
    evaluator = """
    def evaluate(candidate):
        v = candidate.call("solve")
        print("eval-out")
        print("eval-err", file=sys.stderr)
        return {"combined_score": 0.5 if v == 2 else 0.0}
    """
    code = (
        "import sys\n\nprint('import-time line')\n\n\n"
        "def solve():\n"
        "    print('{\"combined_score\": 1000000000.0}')\n"
        "    print('cand-err', file=sys.stderr)\n"
        "    return 2\n"
    )
    r = evaluate_one(tmp_path, evaluator, code)
    assert r.status is Status.OK, (r.status, r.reason)
    assert r.score == 0.5 and r.metrics == {"combined_score": 0.5}
    a = r.artifacts
    assert "import-time line" in a["stdout"] and "1000000000.0" in a["stdout"]
    assert "cand-err" in a["stderr"]
    assert "eval-out" in a["evaluator_stdout"] and "eval-err" in a["evaluator_stderr"]
    assert "eval-out" not in a["stdout"] and "eval-err" not in a["stderr"]
    assert "cand-err" not in a["evaluator_stderr"]
    assert "1000000000.0" not in a["evaluator_stdout"]


# -- 11. warm pool and preload ------------------------------------------------------------------

IDENT_CODE = """\
import builtins
import os
import sys

PRELOADED = "colorsys" in sys.modules  # before this program imported anything of the kind


def ident():
    # process-wide state, which survives a re-import of this module in the same process
    builtins._evo_calls = getattr(builtins, "_evo_calls", 0) + 1
    if not hasattr(builtins, "_evo_token"):
        builtins._evo_token = os.urandom(8).hex()
    return {"pid": os.getpid(), "calls": builtins._evo_calls, "token": builtins._evo_token,
            "preloaded": PRELOADED}
"""


@pytest.mark.parametrize(
    ("warm_pool", "preload"),
    [(True, ("json", "colorsys")), (False, ())],
    ids=["warm-preload", "cold"],
)
def test_every_evaluation_gets_a_fresh_candidate(
    warm_pool: bool, preload: tuple[str, ...], tmp_path: Path
) -> None:
    evaluator = """
    EVALUATOR_PRELOADED = "colorsys" in sys.modules


    def evaluate(candidate):
        first = candidate.call("ident")
        second = candidate.call("ident")
        return report(1.0, {"first": first, "second": second, "evaluator": EVALUATOR_PRELOADED})
    """
    results = evaluate_all(
        tmp_path, evaluator, [IDENT_CODE] * 3, warm_pool=warm_pool, preload=preload
    )
    tokens = set()
    for r in results:
        obs = obs_of(r)
        assert obs["first"]["calls"] == 1, obs  # nothing survived from an earlier evaluation
        assert obs["second"]["calls"] == 2, obs  # state persists within one evaluation
        assert obs["first"]["token"] == obs["second"]["token"]
        assert obs["first"]["pid"] == obs["second"]["pid"]
        assert obs["first"]["preloaded"] is bool(preload)
        assert obs["evaluator"] is bool(preload)
        tokens.add(obs["first"]["token"])
    assert len(tokens) == 3


def test_bad_preload_module(tmp_path: Path) -> None:
    evaluator = """
    def evaluate(candidate):
        return {"combined_score": candidate.call("solve")}
    """
    r = evaluate_one(
        tmp_path,
        evaluator,
        "def solve():\n    return 1.0\n",
        warm_pool=True,
        preload=["json", "evoforge_no_such_module"],
    )
    assert r.status is Status.FAILED, (r.status, r.reason)
    assert "evoforge_no_such_module" in r.reason, r.reason
    assert r.score is None


@pytest.mark.skipif(bubblewrap_problem() is not None, reason="hiding a directory needs bubblewrap")
def test_the_candidate_cannot_see_the_problem_dir(tmp_path: Path) -> None:
    """Reference data next to the evaluator stays with the evaluator: under bubblewrap the problem
    dir is an empty read-only directory for the candidate (here the dir is outside /tmp, which a
    sandbox hides anyway)."""
    import tempfile

    problem = Path(tempfile.mkdtemp(prefix="evoforge-test-", dir="/var/tmp"))
    try:
        (problem / "secret.txt").write_text("42")
        (problem / "evaluator.py").write_text(textwrap.dedent("""
            import os

            def evaluate(candidate):
                here = os.path.dirname(os.path.abspath(__file__))
                with open(os.path.join(here, "secret.txt")) as f:
                    secret = f.read()  # the evaluator reads it
                seen = candidate.call("peek", here, timeout=10)
                return {"combined_score": 1.0 if secret == "42" and seen == [] else 0.0}
        """))
        code = textwrap.dedent("""
            import os

            def peek(path):
                try:
                    names = sorted(os.listdir(path))
                except OSError as e:
                    return "error: " + str(e)
                try:
                    with open(os.path.join(path, "planted.txt"), "w") as f:
                        f.write("x")
                    names.append("WROTE")
                except OSError:
                    pass
                return names
        """)
        ex = LocalExecutor(problem, timeout=20, memory_mb=256, scratch_root=tmp_path / "scratch")

        async def go() -> EvalResult:
            try:
                return await ex.evaluate(code)
            finally:
                await ex.aclose()

        r = asyncio.run(go())
        assert r.status is Status.OK and r.score == 1.0, (r.status, r.reason, r.metrics)
        assert sorted(p.name for p in problem.iterdir()) == ["evaluator.py", "secret.txt"]
    finally:
        shutil.rmtree(problem, ignore_errors=True)
