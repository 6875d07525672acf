"""spread_points_c: the evaluator's checks on known answers, candidates of several files through the
real executor (a faster kernel, a broken one, a driver that cheats on the format), and a short
model-free run that improves on the initial program."""

from __future__ import annotations

import math
from pathlib import Path
from types import ModuleType

import pytest
import support

from evoforge.edit import apply_diff
from evoforge.problem import Problem
from evoforge.program import Status
from evoforge.program_files import MULTI_FILE, unpack


@pytest.fixture(autouse=True)
def _tools() -> None:
    support.skip_without_tools(Problem.load("spread_points_c"))


@pytest.fixture(scope="module")
def prob() -> Problem:
    return Problem.load("spread_points_c")


@pytest.fixture(scope="module")
def ev(prob: Problem) -> ModuleType:
    return support.load_evaluator(prob)


def grid_minus_one() -> list[list[float]]:
    return [[(i % 5) / 4, (i // 5) / 4] for i in range(24)]


def test_known_answer_scores_its_value(ev: ModuleType) -> None:
    points = ev.check_points(grid_minus_one())
    assert ev.min_distance(points) == pytest.approx(0.25, abs=1e-15)


@pytest.mark.parametrize("answer, reason", [
    (grid_minus_one()[:23], "a list of 24"),
    ([*grid_minus_one()[:23], [0.5, 1.5]], "outside the unit square"),
    ([*grid_minus_one()[:23], [0.5, math.nan]], "outside the unit square"),
    ([*grid_minus_one()[:23], [True, 0.5]], "not an \\[x, y\\] pair"),
    ([*grid_minus_one()[:23], [0.5]], "not an \\[x, y\\] pair"),
    ("24 points", "a list of 24"),
])
def test_invalid_answers_are_named(ev: ModuleType, answer: object, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        ev.check_points(answer)


def test_candidates_of_several_files(prob: Problem, tmp_path: Path) -> None:
    def diff(path: str, search: str, replace: str) -> str:
        return f"<<<<<<< SEARCH {path}\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n"

    grid = apply_diff(prob.initial_code, diff(
        "driver.py", "    return best", "    return [[(i % 5) / 4, (i // 5) / 4] for i in range(n)]"),
        MULTI_FILE)
    broken = apply_diff(prob.initial_code, diff("kernel.c", "    return sqrt(min_pair2(xy, n));",
                                                "    return sqrt(min_pair2(xy, n))"), MULTI_FILE)
    crash = apply_diff(prob.initial_code, diff(
        "kernel.c", "    unsigned s = seed ? seed : 1u;", "    unsigned s = seed ? seed : 1u;\n"
        "    if (n > 0) { volatile int *p = 0; *p = 1; }"), MULTI_FILE)
    r_grid, r_broken, r_crash = support.evaluate_codes(prob, tmp_path, [grid, broken, crash])
    assert r_grid.status is Status.OK and r_grid.score == pytest.approx(0.25, abs=1e-12)
    assert r_broken.status is Status.FAILED and "kernel.c does not compile" in r_broken.reason
    assert r_crash.status is Status.CRASHED, (r_crash.status, r_crash.reason)
    assert unpack(grid)["geometry.h"] == unpack(prob.initial_code)["geometry.h"]


def test_model_free_run_improves(prob: Problem, tmp_path: Path) -> None:
    best = support.model_free_best(prob, tmp_path, max_programs=24, seed=0)
    assert best.score > prob.meta["baseline"]
