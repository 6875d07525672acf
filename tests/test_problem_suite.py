"""Every built-in problem: complete metadata, a hardened evaluator, a README with the definition
and best-known value, and an initial program that the real executor scores to its stated baseline.

Per-problem behaviour (known constructions scored to their value, invalid ones rejected with a
reason, a short model-free run improving) is in ``tests/problems/test_<name>.py``.
"""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys

import pytest

from evoforge.config import build_config
from evoforge.errors import ProblemError
from evoforge.executors.local import LocalExecutor
from evoforge.problem import PROBLEM_META_KEYS, Problem, builtin_problems
from evoforge.program import Status

PROBLEMS = sorted(builtin_problems())


def test_missing_tools_are_named_with_their_package(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH
    prob = Problem.load("verilog_multiplier")
    assert set(prob.missing_tools()) == {"yosys", "iverilog", "vvp"}
    with pytest.raises(ProblemError, match="apt-get install iverilog yosys"):
        prob.check_tools()
    from evoforge import api

    with pytest.raises(ProblemError, match="verilog_multiplier needs iverilog, vvp, yosys"):
        api.evolve(prob, run_dir=tmp_path / "r")
    assert not (tmp_path / "r").exists()  # refused before anything was created
    r = subprocess.run([sys.executable, "-m", "evoforge.cli", "problems", "list"],
                       capture_output=True, text=True, env={"COLUMNS": "250", "PATH": str(tmp_path)})
    assert "apt-get install iverilog" in r.stdout and "missing tools" in r.stdout


def test_the_suite_is_listed() -> None:
    r = subprocess.run([sys.executable, "-m", "evoforge.cli", "problems", "list"],
                       capture_output=True, text=True, env={"COLUMNS": "250", "PATH": "/usr/bin"})
    assert r.returncode == 0, r.stderr
    for name in PROBLEMS:
        assert name in r.stdout
        best = Problem.load(name).meta.get("best_known")
        if best is not None:
            assert f"{best:.10g}" in r.stdout


@pytest.mark.parametrize("name", PROBLEMS)
def test_problem_is_complete(name: str) -> None:
    prob = Problem.load(name)
    missing = [k for k in PROBLEM_META_KEYS if k not in prob.meta]
    assert not missing, f"{name}/problem.yaml lacks {missing}"
    cfg = build_config(prob.config)
    assert cfg.objective.direction == prob.meta["direction"]
    assert prob.form == "hardened", f"{name}: built-in evaluators use evaluate(candidate)"
    readme = (prob.path / "README.md").read_text()
    assert prob.task == readme and len(readme) > 200
    if prob.meta["best_known"] is not None:
        assert f"{prob.meta['best_known']}" in readme, "the README states the best-known value"
    assert str(prob.meta["best_known_source"]).strip()
    if "baseline_tolerance" in prob.meta:  # a randomised score must not fail re-verification
        assert cfg.evaluation.reverify_tolerance >= float(prob.meta["baseline_tolerance"])


@pytest.mark.parametrize("name", PROBLEMS)
def test_initial_program_scores_its_baseline(name: str, tmp_path) -> None:
    prob = Problem.load(name)
    if prob.missing_tools():
        pytest.skip(f"{name} needs {sorted(prob.missing_tools())} (see problem.yaml requires)")
    cfg = build_config(prob.config)
    ex = LocalExecutor.from_config(prob.path, cfg.evaluation, score_metric=cfg.objective.score_metric,
                                   program_name=prob.program_name)
    ex.scratch_root = tmp_path / "scratch"

    async def go():
        try:
            return await ex.evaluate(prob.initial_code)
        finally:
            await ex.aclose()

    r = asyncio.run(go())
    assert r.status is Status.OK, (r.reason, r.artifacts)
    tol = float(prob.meta.get("baseline_tolerance", 1e-9))
    assert math.isclose(r.score, prob.meta["baseline"], rel_tol=tol, abs_tol=tol), r.score
