"""OpenEvolve-format evaluators run unchanged (issue 10): ``from openevolve.evaluation_result
import EvaluationResult`` works with or without OpenEvolve installed, under both sandboxes, and
what they return is read with OpenEvolve's semantics (feedback among the metrics, the average
without ``combined_score``, failure dicts)."""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from evoforge import api
from evoforge.config import build_config
from evoforge.executors.local import LocalExecutor
from evoforge.problem import Problem
from evoforge.program import EvalResult, Status
from evoforge.sandbox import bubblewrap_problem
from evoforge.storages import SQLiteStorage
from evoforge.testing import FunctionMutator

EVOFORGE = str(Path(sys.executable).with_name("evoforge"))

EVALUATOR = textwrap.dedent('''
    import importlib.util
    from openevolve.evaluation_result import EvaluationResult

    def evaluate(program_path):
        spec = importlib.util.spec_from_file_location("program", program_path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        value = module.f()
        return EvaluationResult(metrics={"combined_score": value},
                                artifacts={"stdout_note": f"f() returned {value}"})
''')

SANDBOXES = ["process"] + (["bubblewrap"] if bubblewrap_problem() is None else [])


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_openevolve_evaluation_result_import_works_without_openevolve(tmp_path: Path,
                                                                     sandbox: str) -> None:
    (tmp_path / "evaluator.py").write_text(EVALUATOR)
    ex = LocalExecutor(tmp_path, sandbox=sandbox, timeout=30, warm_pool=False)

    async def go():
        try:
            return await ex.evaluate("def f():\n    return 0.75\n")
        finally:
            await ex.aclose()

    r = asyncio.run(go())
    assert r.status is Status.OK, (r.status, r.reason, r.artifacts)
    assert r.score == 0.75 and r.artifacts["stdout_note"] == "f() returned 0.75"


def test_other_missing_modules_still_fail_to_import(tmp_path: Path) -> None:
    (tmp_path / "evaluator.py").write_text("import openevolve.controller\n"
                                           "def evaluate(p):\n    return {'combined_score': 1}\n")
    ex = LocalExecutor(tmp_path, sandbox="process", timeout=30, warm_pool=False)

    async def go():
        try:
            return await ex.evaluate("x = 1\n")
        finally:
            await ex.aclose()

    r = asyncio.run(go())
    assert r.status is Status.FAILED and "openevolve.controller" in r.reason


# -- what OpenEvolve evaluators return (issue 10) ----------------------------------------------

RESULTS = Path(__file__).parent / "fixtures" / "openevolve_results"
SORT_INITIAL = ("# EVOLVE-BLOCK-START\ndef solve(xs):\n    return xs\n# EVOLVE-BLOCK-END\n")
SORT_CHILDREN = {
    "right": "def solve(xs):\n    return sorted(xs)\n",
    "partial": "def solve(xs):\n    return xs if xs[:1] == [3] else sorted(xs)\n",
    "all_wrong": "def solve(xs):\n    return [0] * (len(xs) + 1)\n",
    "crash": "def solve(xs):\n    return 1 / 0\n",
}


def _evaluate(problem_dir: Path, evaluator: str, codes: list[str],
              sandbox: str = "process") -> list[EvalResult]:
    ex = LocalExecutor(problem_dir, evaluator=evaluator, sandbox=sandbox, timeout=30,
                       warm_pool=False)

    async def go():
        try:
            return [await ex.evaluate(code) for code in codes]
        finally:
            await ex.aclose()

    return asyncio.run(go())


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_an_openevolve_run_stores_scores_failures_and_feedback(tmp_path: Path,
                                                               sandbox: str) -> None:
    """A whole run of an OpenEvolve evaluator through the real executor: partial credit is ok
    with its 'error' as feedback; a failure dict (score 0 with an 'error') and a crash caught
    into one are failed with the evaluator's message first; text, bools and an 'artifacts'
    dict among the metrics are stored as feedback, and `show` prints them."""
    problem_dir = tmp_path / "problem"
    problem_dir.mkdir()
    (problem_dir / "initial_program.py").write_text(SORT_INITIAL)
    shutil.copy(RESULTS / "plain" / "evaluator.py", problem_dir / "evaluator.py")
    problem = Problem.load(problem_dir)
    children = iter(SORT_CHILDREN.values())
    cfg = build_config(problem.config, {"max_programs": 1 + len(SORT_CHILDREN),
                                        "evaluation": {"workers": 1, "sandbox": sandbox}})
    outcome = api.evolve(problem, run_dir=tmp_path / "run", config=cfg,
                         mutator=FunctionMutator(lambda request: next(children, None)))
    assert outcome.best is not None and outcome.best.score == 1.0, outcome
    with SQLiteStorage(tmp_path / "run" / "evoforge.db", readonly=True) as s:
        by_code = {p.code: p for p in s.programs()}
    initial, right = by_code[SORT_INITIAL], by_code[SORT_CHILDREN["right"]]
    partial = by_code[SORT_CHILDREN["partial"]]
    all_wrong, crash = by_code[SORT_CHILDREN["all_wrong"]], by_code[SORT_CHILDREN["crash"]]

    # partial credit: ok, the evaluator's 'error' text is feedback, not a failure
    assert (initial.status, initial.score) == (Status.OK, 0.25), initial
    assert (partial.status, partial.score) == (Status.OK, 0.75), partial
    assert partial.artifacts["error"] == "wrong on [3, 1, 2]"
    assert partial.metrics == {"combined_score": 0.75, "cases_right": 3.0}  # numbers only
    assert partial.artifacts["all_correct"] == "False"  # a bool: feedback, never a score
    assert partial.artifacts["failing_case"] == "[3, 1, 2]"  # "artifacts" among the metrics
    assert partial.artifacts["summary"] == "3 of 4 cases sorted"
    assert partial.artifacts["raw"] == "bytes too"
    assert (right.status, right.score, right.artifacts["all_correct"]) == (Status.OK, 1.0, "True")
    assert right.artifacts["error"] == ""
    # failure dicts: failed, the evaluator's message leads the reason
    assert all_wrong.status is Status.FAILED and all_wrong.score is None
    assert all_wrong.reason.startswith("wrong on [3, 1, 2] ("), all_wrong.reason
    assert crash.status is Status.FAILED
    assert crash.reason.startswith("ZeroDivisionError: division by zero ("), crash.reason
    assert crash.artifacts["error"] == "ZeroDivisionError: division by zero"
    assert crash.metrics == {"combined_score": 0.0}

    shown = subprocess.run([EVOFORGE, "show", str(tmp_path / "run"), str(partial.id)],
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert "-- error --" in shown.stdout and "wrong on [3, 1, 2]" in shown.stdout
    assert "-- all_correct --" in shown.stdout
    shown = subprocess.run([EVOFORGE, "show", str(tmp_path / "run"), str(crash.id)],
                           capture_output=True, text=True, timeout=120)
    assert "reason: ZeroDivisionError: division by zero" in shown.stdout, shown.stdout


def test_without_combined_score_the_average_of_the_numbers_is_the_score(
        caplog: pytest.LogCaptureFixture) -> None:
    """OpenEvolve's rule: no score metric -> the average of the numeric metrics (a bool or a
    text is not one); the run says so once."""
    code = "def measure():\n    return 0.5, 2.0\n"
    with caplog.at_level(logging.WARNING, logger="evoforge"):
        first, again = _evaluate(RESULTS / "plain", "averaging.py", [code, code])
    for r in (first, again):
        assert (r.status, r.score) == (Status.OK, 1.25), (r.status, r.reason)
        assert r.metrics == {"accuracy": 0.5, "speed": 2.0}
        assert (r.artifacts["valid"], r.artifacts["note"]) == ("True", "measured twice")
    notices = [m for m in caplog.messages if "no 'combined_score'" in m]
    assert len(notices) == 1, caplog.messages
    assert "average of its numeric metrics (accuracy, speed)" in notices[0]
    assert "as OpenEvolve does" in notices[0]


def test_metrics_without_a_number_fail_naming_the_fix() -> None:
    (r,) = _evaluate(RESULTS / "plain", "no_numbers.py", ["x = 1\n"])
    assert r.status is Status.FAILED
    assert r.reason.startswith("the evaluator returned no numeric metric (only 'status', "
                               "'passed', 'details', 'extra')"), r.reason
    assert "return e.g. {'combined_score': 0.5}" in r.reason
    assert r.artifacts["details"] == "['a', 'b']" and r.artifacts["extra"] == "None"


def test_a_nan_beside_the_score_is_feedback_but_a_nan_score_fails(tmp_path: Path) -> None:
    (aside,) = _evaluate(RESULTS / "plain", "nan_aside.py", ["x = 1\n"])
    assert (aside.status, aside.score, aside.metrics) == (Status.OK, 0.5, {"combined_score": 0.5})
    assert "'ratio' is nan" in aside.artifacts["ratio"]
    (tmp_path / "evaluator.py").write_text(
        "def evaluate(p):\n    return {'accuracy': 1.0, 'speed': float('inf'), 'error': 'slow'}\n")
    (averaged,) = _evaluate(tmp_path, "evaluator.py", ["x = 1\n"])  # the average needs it
    assert averaged.status is Status.FAILED
    assert averaged.reason.startswith("slow (metric 'speed' is inf"), averaged.reason


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_openevolves_own_evaluation_result_class_is_accepted(sandbox: str) -> None:
    """Where OpenEvolve is installed its EvaluationResult (a class evoforge does not define,
    bytes artifacts) is found before the stand-in and read the same way."""
    (r,) = _evaluate(RESULTS / "installed", "evaluator.py", ["def f():\n    return 0.5\n"],
                     sandbox=sandbox)
    assert (r.status, r.score) == (Status.OK, 0.5), (r.status, r.reason, r.artifacts)
    assert r.artifacts["class"] == "openevolve.evaluation_result.EvaluationResult"
    assert r.artifacts["stderr_tail"] == "from bytes"


def test_the_stand_in_matches_openevolves_helpers() -> None:
    from evoforge.evaluation_result import EvaluationResult

    r = EvaluationResult.from_dict({"combined_score": 1.0})
    assert r.to_dict() == {"combined_score": 1.0} and not r.has_artifacts()
    r = EvaluationResult({"combined_score": 1.0}, {"a": "é", "b": b"xy"})
    assert r.get_artifact_keys() == ["a", "b"]
    assert (r.get_artifact_size("a"), r.get_total_artifact_size()) == (2, 4)
