"""Cascade thresholds follow the objective's direction: under ``minimize`` a stage score above
its threshold is cut, one at or below it goes on (a low score is the good one)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from evoforge.config import EvaluationConfig
from evoforge.executors.local import LocalExecutor
from evoforge.program import EvalResult, Status

FIXTURES = Path(__file__).parent / "fixtures" / "evaluators"


def cascade_code(s1: float, s2: float, s3: float) -> str:
    return f"def stage1(): return {s1}\ndef stage2(): return {s2}\ndef stage3(): return {s3}\n"


def run(scratch: Path, code: str, **kw: Any) -> EvalResult:
    ex = LocalExecutor(FIXTURES, evaluator="cascade.py", scratch_root=scratch, timeout=20.0,
                       sandbox="process", cascade_thresholds=(0.5, 0.8), **kw)

    async def go() -> EvalResult:
        try:
            return await ex.evaluate(code)
        finally:
            await ex.aclose()

    return asyncio.run(go())


@pytest.mark.parametrize(("minimize", "good", "bad"), [
    (False, (0.6, 0.85, 0.95), (0.3, 0.9, 0.9)),
    (True, (0.3, 0.7, 0.1), (0.6, 0.1, 0.1)),
])
def test_a_good_stage_score_goes_on_a_bad_one_is_cut(tmp_path: Path, minimize: bool,
                                                     good: tuple[float, float, float],
                                                     bad: tuple[float, float, float]) -> None:
    r = run(tmp_path, cascade_code(*good), minimize=minimize)
    assert r.status is Status.OK, r.reason
    assert {"stage1_ran", "stage2_ran", "stage3_ran"} <= set(r.metrics)
    assert r.artifacts["cascade"] == "completed all 3 stages"
    assert r.score == good[2]

    r = run(tmp_path, cascade_code(*bad), minimize=minimize)
    assert r.status is Status.OK, r.reason
    assert "stage2_ran" not in r.metrics
    assert r.score == bad[0]
    sign = ">" if minimize else "<"
    assert r.artifacts["cascade"].startswith(
        f"stopped after stage 1 of 3: score {bad[0]:g} {sign} threshold 0.5")


def test_minimize_cuts_after_the_second_stage_too(tmp_path: Path) -> None:
    r = run(tmp_path, cascade_code(0.4, 0.9, 0.0), minimize=True)  # 0.9 > 0.8: bad
    assert r.score == 0.9 and "stage3_ran" not in r.metrics
    assert r.artifacts["cascade"].startswith("stopped after stage 2 of 3")
    assert r.artifacts["cascade"].endswith("(objective.direction: minimize)")


def test_a_score_equal_to_the_threshold_goes_on_in_both_directions(tmp_path: Path) -> None:
    for minimize in (False, True):
        r = run(tmp_path, cascade_code(0.5, 0.8, 0.7), minimize=minimize)
        assert r.artifacts["cascade"] == "completed all 3 stages", minimize


def test_the_direction_comes_from_the_config(tmp_path: Path) -> None:
    from evoforge.api import _executor
    from evoforge.config import build_config
    from evoforge.problem import Problem

    problem = Problem.load("circle_packing_26")
    for direction in ("maximize", "minimize"):
        cfg = build_config({"objective": {"direction": direction},
                            "evaluation": {"sandbox": "process"}})
        ex = _executor(problem, cfg)
        assert ex.minimize is (direction == "minimize")
    ex = LocalExecutor.from_config(FIXTURES, EvaluationConfig(sandbox="process"),
                                   score_metric="combined_score", program_name="p.py")
    assert ex.minimize is False  # the default: maximize, as before
