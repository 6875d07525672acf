"""circle_packing_26: the checker scores known packings exactly and rejects bad ones with a clear
reason (directly and through the real executor), and a short model-free run improves the initial
program."""

from __future__ import annotations

import asyncio
import importlib.util
import math
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from evoforge.api import evolve
from evoforge.config import build_config
from evoforge.executors.local import LocalExecutor
from evoforge.problem import Problem
from evoforge.program import EvalResult, Status

NAME = "circle_packing_26"
N = 26
PROB = Problem.load(NAME)


def _load_evaluator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_test_{NAME}_evaluator", PROB.evaluator)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


EV = _load_evaluator()


def grid_packing() -> tuple[list[list[float]], list[float]]:
    """A 5 x 5 grid of radius 3/32 (touching neighbours and walls exactly; every number is dyadic,
    so the arithmetic is exact) plus N - 25 circles of radius 1/32 in the free strip at the right
    edge. Sum: (75 + N - 25) / 32."""
    centers = [[(3 + 6 * i) / 32, (3 + 6 * j) / 32] for i in range(5) for j in range(5)]
    centers += [[31 / 32, (1 + 2 * k) / 32] for k in range(N - 25)]
    radii = [3 / 32] * 25 + [1 / 32] * (N - 25)
    return centers, radii


GRID_SUM = (75 + N - 25) / 32


def packing_program(centers: Any, radii: Any, *, extra: str = "") -> str:
    return f"{extra}\ndef run_packing():\n    return {centers!r}, {radii!r}\n"


def evaluate_codes(tmp_path: Path, codes: list[str], **evaluation: Any) -> list[EvalResult]:
    """Evaluate ``codes`` one after another through the real executor (the problem's own config,
    with ``evaluation`` overrides)."""
    cfg = build_config(PROB.config, {"evaluation": evaluation})
    ex = LocalExecutor.from_config(PROB.path, cfg.evaluation, score_metric=cfg.objective.score_metric,
                                   program_name=PROB.program_name)
    ex.scratch_root = tmp_path / "scratch"

    async def go() -> list[EvalResult]:
        try:
            return [await ex.evaluate(code) for code in codes]
        finally:
            await ex.aclose()

    return asyncio.run(go())


# -- 1. known valid packings --------------------------------------------------------------


def test_checker_scores_the_grid_exactly() -> None:
    centers, radii = grid_packing()
    assert EV.check_packing(centers, radii) == GRID_SUM == 2.375


def test_checker_accepts_ints_and_zero_radii() -> None:
    centers, radii = grid_packing()
    centers[-1] = [1, 0]  # a corner, as ints
    radii[-1] = 0
    assert EV.check_packing(centers, radii) == GRID_SUM - 1 / 32


def test_known_packing_through_the_executor(tmp_path: Path) -> None:
    centers, radii = grid_packing()
    numpy_code = ("import numpy as np\n\n\ndef run_packing():\n"
                  f"    return np.array({centers!r}), np.array({radii!r})\n")
    ok, via_numpy = evaluate_codes(tmp_path, [packing_program(centers, radii), numpy_code])
    assert ok.status is Status.OK, (ok.reason, ok.artifacts)
    assert ok.score == GRID_SUM
    assert ok.metrics["sum_radii"] == GRID_SUM
    assert ok.metrics["min_radius"] == 1 / 32
    assert math.isclose(ok.metrics["ratio_to_best_known"], GRID_SUM / 2.6358627564)
    assert "2.3750000000" in ok.artifacts["feedback"]
    assert via_numpy.status is Status.OK, (via_numpy.reason, via_numpy.artifacts)
    assert via_numpy.score == GRID_SUM


# -- 2. invalid answers -------------------------------------------------------------------


def _modified(**changes: Any) -> tuple[list[Any], list[Any]]:
    centers, radii = grid_packing()
    for key, value in changes.items():
        kind, index = key.split("_")
        (centers if kind == "c" else radii)[int(index)] = value
    return centers, radii


@pytest.mark.parametrize(
    ("centers", "radii", "reason"),
    [
        pytest.param(*_modified(c_25=[0.5, 0.5]), "circles 12 and 25 overlap", id="overlap"),
        # 0.3 - 0.1 rounds to 0.19999999999999998 < 0.1 + 0.1: touching in exact arithmetic,
        # an overlap of 3e-17 in doubles; zero tolerance rejects it.
        pytest.param([[0.1, 0.1], [0.3, 0.1]] + grid_packing()[0][2:],
                     [0.1, 0.1] + grid_packing()[1][2:], "circles 0 and 1 overlap by 2.776e-17",
                     id="rounding-overlap"),
        pytest.param(*_modified(c_25=[1.0, 0.5]), "circle 25", id="out-of-bounds"),
        pytest.param(*_modified(c_0=[-0.5, 0.5], r_0=0.0), "out of bounds", id="negative-coordinate"),
        pytest.param(*_modified(r_25=-0.01), "radius 25 is negative", id="negative-radius"),
        pytest.param(grid_packing()[0][:-1], grid_packing()[1][:-1], "expected 26 centers and 26 radii",
                     id="too-few"),
        pytest.param(*_modified(c_3=[0.1, 0.2, 0.3]), "center 3 is list", id="three-coordinates"),
        pytest.param(*_modified(r_4="0.09375"), "radius 4 is str", id="string-radius"),
        pytest.param(*_modified(c_5=[True, 0.5]), "center 5 x is bool", id="bool-coordinate"),
        pytest.param(*_modified(r_6=None), "radius 6 is NoneType", id="none-radius"),
        pytest.param(*_modified(r_7=math.nan), "radius 7 is nan", id="nan"),
        pytest.param(*_modified(c_8=[math.inf, 0.5]), "center 8 x is inf", id="inf"),
        pytest.param(*_modified(r_9=10**400), "too large for a float", id="huge-int"),
        pytest.param({"a": 1}, grid_packing()[1], "must be lists", id="dict-centers"),
    ],
)
def test_checker_rejects(centers: Any, radii: Any, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        EV.check_packing(centers, radii)


def test_invalid_answers_through_the_executor(tmp_path: Path) -> None:
    centers, radii = grid_packing()
    cases = [
        (packing_program(*_modified(c_25=[0.5, 0.5])), Status.FAILED, "circles 12 and 25 overlap"),
        (packing_program(*_modified(c_25=[1.0, 0.5])), Status.FAILED, "out of bounds"),
        (packing_program(centers, radii[:-1]), Status.FAILED, "expected 26 centers and 26 radii"),
        (packing_program(*_modified(r_4="0.1")), Status.FAILED, "radius 4 is str"),
        (packing_program(*_modified(c_5=[0.5, False])), Status.FAILED, "center 5 y is bool"),
        (packing_program(*_modified(c_3=[0.1])), Status.FAILED, "center 3 is list"),
        (f"def run_packing():\n    r = {radii!r}\n    r[7] = float('nan')\n    return {centers!r}, r\n",
         Status.FAILED, "non-finite"),
        (f"def run_packing():\n    c = {centers!r}\n    c[8][0] = 1e999\n    return c, {radii!r}\n",
         Status.FAILED, "non-finite"),
        (f"def run_packing():\n    return {centers!r}, {radii!r}, 2.375\n", Status.FAILED,
         "must return (centers, radii)"),
        ("def run_packing():\n    return 'a packing'\n", Status.FAILED,
         "must return (centers, radii)"),
        ("def run_packing():\n    raise RuntimeError('no packing today')\n", Status.FAILED,
         "no packing today"),
        ("def construct_packing():\n    return [], []\n", Status.FAILED, "run_packing"),
    ]
    results = evaluate_codes(tmp_path, [code for code, _, _ in cases])
    for (code, status, reason), r in zip(cases, results, strict=True):
        assert r.status is status, (code, r.status, r.reason)
        assert reason in r.reason, (code, r.reason)


def test_a_hanging_candidate_times_out(tmp_path: Path) -> None:
    (r,) = evaluate_codes(tmp_path, ["def run_packing():\n    while True:\n        pass\n"], timeout=2)
    assert r.status is Status.TIMEOUT, (r.status, r.reason)


# -- 3. a short model-free run improves on the initial program -----------------------------


def test_model_free_run_improves(tmp_path: Path) -> None:
    cfg = build_config(PROB.config, {"max_programs": 30, "max_time": None, "seed": 1,
                                     "evaluation": {"workers": 2}})
    outcome = evolve(PROB, run_dir=tmp_path / "r", config=cfg)
    assert outcome.best is not None
    assert outcome.best.score > PROB.meta["baseline"] + 1e-6, outcome.best.score
