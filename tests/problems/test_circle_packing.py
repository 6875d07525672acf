"""circle_packing_26 and circle_packing_32: the checker scores known packings exactly and rejects bad
ones with a clear reason (directly and through the real executor), and a short model-free run
improves the initial program."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import support

from evoforge.problem import Problem
from evoforge.program import Status


@dataclass(frozen=True)
class Case:
    """One problem of the pair: its number of circles, best-known sum of radii, files."""

    name: str
    n: int
    best_known: float
    prob: Problem
    ev: ModuleType

    @classmethod
    def load(cls, n: int, best_known: float) -> Case:
        prob = Problem.load(f"circle_packing_{n}")
        return cls(prob.path.name, n, best_known, prob, support.load_evaluator(prob))

    @property
    def grid_sum(self) -> float:
        return (75 + self.n - 25) / 32

    def grid_packing(self) -> tuple[list[list[float]], list[float]]:
        """A 5 x 5 grid of radius 3/32 (touching neighbours and walls exactly; every number is
        dyadic, so the arithmetic is exact) plus n - 25 circles of radius 1/32 in the free strip at
        the right edge. Sum: (75 + n - 25) / 32."""
        centers = [[(3 + 6 * i) / 32, (3 + 6 * j) / 32] for i in range(5) for j in range(5)]
        centers += [[31 / 32, (1 + 2 * k) / 32] for k in range(self.n - 25)]
        radii = [3 / 32] * 25 + [1 / 32] * (self.n - 25)
        return centers, radii

    def modified(self, **changes: Any) -> tuple[list[Any], list[Any]]:
        centers, radii = self.grid_packing()
        for key, value in changes.items():
            kind, index = key.split("_")
            (centers if kind == "c" else radii)[int(index)] = value
        return centers, radii


CASES = [Case.load(26, 2.6358627564), Case.load(32, 2.9379445262)]


@pytest.fixture(params=CASES, ids=[c.name for c in CASES])
def case(request: pytest.FixtureRequest) -> Case:
    return request.param


def packing_program(centers: Any, radii: Any, *, extra: str = "") -> str:
    return f"{extra}\ndef run_packing():\n    return {centers!r}, {radii!r}\n"


# -- 1. known valid packings --------------------------------------------------------------


def test_checker_scores_the_grid_exactly(case: Case) -> None:
    centers, radii = case.grid_packing()
    assert case.ev.check_packing(centers, radii) == case.grid_sum == {26: 2.375, 32: 2.5625}[case.n]


def test_checker_accepts_ints_and_zero_radii(case: Case) -> None:
    centers, radii = case.grid_packing()
    centers[-1] = [1, 0]  # a corner, as ints
    radii[-1] = 0
    assert case.ev.check_packing(centers, radii) == case.grid_sum - 1 / 32


def test_known_packing_through_the_executor(case: Case, tmp_path: Path) -> None:
    centers, radii = case.grid_packing()
    numpy_code = ("import numpy as np\n\n\ndef run_packing():\n"
                  f"    return np.array({centers!r}), np.array({radii!r})\n")
    ok, via_numpy = support.evaluate_codes(case.prob, tmp_path, [packing_program(centers, radii), numpy_code])
    assert ok.status is Status.OK, (ok.reason, ok.artifacts)
    assert ok.score == case.grid_sum
    assert ok.metrics["sum_radii"] == case.grid_sum
    assert ok.metrics["min_radius"] == 1 / 32
    assert math.isclose(ok.metrics["ratio_to_best_known"], case.grid_sum / case.best_known)
    assert {26: "2.3750000000", 32: "2.5625000000"}[case.n] in ok.artifacts["feedback"]
    assert via_numpy.status is Status.OK, (via_numpy.reason, via_numpy.artifacts)
    assert via_numpy.score == case.grid_sum


# -- 2. invalid answers -------------------------------------------------------------------


def _rejected(c: Case) -> list[Any]:
    grid_centers, grid_radii = c.grid_packing()
    return [
        pytest.param(c, *c.modified(c_25=[0.5, 0.5]), "circles 12 and 25 overlap", id="overlap"),
        # 0.3 - 0.1 rounds to 0.19999999999999998 < 0.1 + 0.1: touching in exact arithmetic,
        # an overlap of 3e-17 in doubles; zero tolerance rejects it.
        pytest.param(c, [[0.1, 0.1], [0.3, 0.1]] + grid_centers[2:], [0.1, 0.1] + grid_radii[2:],
                     "circles 0 and 1 overlap by 2.776e-17", id="rounding-overlap"),
        pytest.param(c, *c.modified(c_25=[1.0, 0.5]), "circle 25", id="out-of-bounds"),
        pytest.param(c, *c.modified(c_0=[-0.5, 0.5], r_0=0.0), "out of bounds", id="negative-coordinate"),
        pytest.param(c, *c.modified(r_25=-0.01), "radius 25 is negative", id="negative-radius"),
        pytest.param(c, grid_centers[:-1], grid_radii[:-1], f"expected {c.n} centers and {c.n} radii",
                     id="too-few"),
        pytest.param(c, *c.modified(c_3=[0.1, 0.2, 0.3]), "center 3 is list", id="three-coordinates"),
        pytest.param(c, *c.modified(r_4="0.09375"), "radius 4 is str", id="string-radius"),
        pytest.param(c, *c.modified(c_5=[True, 0.5]), "center 5 x is bool", id="bool-coordinate"),
        pytest.param(c, *c.modified(r_6=None), "radius 6 is NoneType", id="none-radius"),
        pytest.param(c, *c.modified(r_7=math.nan), "radius 7 is nan", id="nan"),
        pytest.param(c, *c.modified(c_8=[math.inf, 0.5]), "center 8 x is inf", id="inf"),
        pytest.param(c, *c.modified(r_9=10**400), "too large for a float", id="huge-int"),
        pytest.param(c, {"a": 1}, grid_radii, "must be lists", id="dict-centers"),
    ]


@pytest.mark.parametrize(
    ("c", "centers", "radii", "reason"),
    [pytest.param(*p.values, id=f"{c.name}-{p.id}") for c in CASES for p in _rejected(c)],
)
def test_checker_rejects(c: Case, centers: Any, radii: Any, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        c.ev.check_packing(centers, radii)


def test_invalid_answers_through_the_executor(case: Case, tmp_path: Path) -> None:
    centers, radii = case.grid_packing()
    cases = [
        (packing_program(*case.modified(c_25=[0.5, 0.5])), Status.FAILED, "circles 12 and 25 overlap"),
        (packing_program(*case.modified(c_25=[1.0, 0.5])), Status.FAILED, "out of bounds"),
        (packing_program(centers, radii[:-1]), Status.FAILED,
         f"expected {case.n} centers and {case.n} radii"),
        (packing_program(*case.modified(r_4="0.1")), Status.FAILED, "radius 4 is str"),
        (packing_program(*case.modified(c_5=[0.5, False])), Status.FAILED, "center 5 y is bool"),
        (packing_program(*case.modified(c_3=[0.1])), Status.FAILED, "center 3 is list"),
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
    results = support.evaluate_codes(case.prob, tmp_path, [code for code, _, _ in cases])
    for (code, status, reason), r in zip(cases, results, strict=True):
        assert r.status is status, (code, r.status, r.reason)
        assert reason in r.reason, (code, r.reason)


def test_a_hanging_candidate_times_out(case: Case, tmp_path: Path) -> None:
    hang = "def run_packing():\n    while True:\n        pass\n"
    support.assert_times_out(case.prob, tmp_path, hang, timeout=2)


# -- 3. a short model-free run improves on the initial program -----------------------------


def test_model_free_run_improves(case: Case, tmp_path: Path) -> None:
    best = support.model_free_best(case.prob, tmp_path, max_programs=30, seed=1)
    assert best.score > case.prob.meta["baseline"] + 1e-6, best.score
