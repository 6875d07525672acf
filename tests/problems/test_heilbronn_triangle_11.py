"""heilbronn_triangle_11: exact containment and exact areas on known point sets, invalid answers
rejected with a clear reason (directly and through the real executor), degenerate sets scored 0,
and a short model-free run improves the initial program."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import support

from evoforge.problem import Problem
from evoforge.program import Status

NAME = "heilbronn_triangle_11"
N = 11
PROB = Problem.load(NAME)


EV = support.load_evaluator(PROB)


def parabola_points() -> list[list[float]]:
    """11 points on the convex parabola y = 1/16 + 2 (x - 1/2)^2 at x = 3/16, 4/16, ..., 13/16
    (all dyadic, so exact in floats). The triangle of points at a < b < c has area
    2 * (b - a) (c - b) (c - a) / 2, smallest for three neighbours: 2 * h^3 with h = 1/16, i.e.
    1/2048. The highest points (x = 3/16 or 13/16, y = 66/256) are inside the triangle
    (66/256 < sqrt(3) * 3/16)."""
    xs = [Fraction(3 + i, 16) for i in range(N)]
    return [[float(x), float(Fraction(1, 16) + 2 * (x - Fraction(1, 2)) ** 2)] for x in xs]


PARABOLA_SCORE = (1 / 2048) / (math.sqrt(3) / 4)


def points_program(points: Any) -> str:
    return f"def construct_points():\n    return {points!r}\n"


# -- 1. known point sets ------------------------------------------------------------------


def test_parabola_scores_its_exact_value() -> None:
    points = parabola_points()
    area, triple = EV.smallest_triangle(EV.check_points(points))
    assert area == Fraction(1, 2048)
    assert triple == (0, 1, 2)
    assert EV.score_points(points) == PARABOLA_SCORE
    assert math.isclose(PARABOLA_SCORE, 1 / (512 * math.sqrt(3)), rel_tol=1e-15)


def test_normalisation_constants() -> None:
    """Areas are exact half cross products; the score divides by area(T) = sqrt(3)/4, so it is
    the smallest area in a unit-area triangle, the normalisation of the best-known 0.0365."""
    half = EV.smallest_triangle([(Fraction(0), Fraction(0)), (Fraction(1), Fraction(0)),
                                 (Fraction(1, 2), Fraction(1, 2))])[0]
    assert half == Fraction(1, 4)
    assert EV.TRIANGLE_AREA == math.sqrt(3) / 4
    assert EV.BEST_KNOWN == PROB.meta["best_known"] == 0.0365


def test_degenerate_sets_score_zero() -> None:
    on_an_edge = [[i / 10, 0.0] for i in range(N)]
    assert EV.score_points(on_an_edge) == 0.0
    repeated = parabola_points()
    repeated[5] = list(repeated[4])
    assert EV.score_points(repeated) == 0.0


def test_containment_is_exact() -> None:
    def inside(x: float, y: float) -> bool:
        return bool(EV.in_triangle(Fraction(x), Fraction(y)))

    assert inside(0.0, 0.0) and inside(1.0, 0.0) and inside(0.5, 0.0) and inside(1, 0)
    assert not inside(-5e-324, 0.0) and not inside(math.nextafter(1.0, 2.0), 0.0)
    assert not inside(0.5, -5e-324)
    # the apex: the largest double y with y^2 <= 3/4 is inside, the next one is not
    y = math.sqrt(3) / 2
    while Fraction(y) ** 2 > Fraction(3, 4):
        y = math.nextafter(y, 0.0)
    while Fraction(math.nextafter(y, 1.0)) ** 2 <= Fraction(3, 4):
        y = math.nextafter(y, 1.0)
    assert inside(0.5, y)
    assert not inside(0.5, math.nextafter(y, 1.0))
    # the slanted edges, against the true sqrt(3): y = 0.3464 at x = 0.2 is just under sqrt(3) x
    assert inside(0.2, 0.3464) and not inside(0.2, 0.3465)
    assert inside(0.8, 0.3464) and not inside(0.8, 0.3465)


def test_initial_program_points_stay_inside_with_the_helper() -> None:
    module = support.load_module(PROB.initial_program, f"_test_{NAME}_initial")
    corners = [module.to_cartesian(*w) for w in [(1, 0, 0), (0, 1, 0), (0, 0, 1), (0, 1, 1),
                                                 (1, 0, 1), (1, 1, 0), (-1, -1, 0)]]
    EV.check_points(corners + [[0.5, 0.1]] * (N - len(corners)))  # no ValueError


def test_known_points_through_the_executor(tmp_path: Path) -> None:
    numpy_code = ("import numpy as np\n\n\ndef construct_points():\n"
                  f"    return np.array({parabola_points()!r})\n")
    on_an_edge = [[i / 10, 0.0] for i in range(N)]
    ok, via_numpy, degenerate = support.evaluate_codes(
        PROB, tmp_path, [points_program(parabola_points()), numpy_code, points_program(on_an_edge)])
    assert ok.status is Status.OK, (ok.reason, ok.artifacts)
    assert ok.score == PARABOLA_SCORE
    assert ok.metrics["min_area"] == 1 / 2048
    assert "points 0, 1, 2" in ok.artifacts["feedback"]
    assert via_numpy.status is Status.OK and via_numpy.score == PARABOLA_SCORE, via_numpy.reason
    assert degenerate.status is Status.OK, degenerate.reason
    assert degenerate.score == 0.0
    assert "collinear" in degenerate.artifacts["feedback"]


# -- 2. invalid answers -------------------------------------------------------------------


def _modified(index: int, value: Any) -> list[Any]:
    points: list[Any] = parabola_points()
    points[index] = value
    return points


@pytest.mark.parametrize(
    ("points", "reason"),
    [
        pytest.param(_modified(3, [0.2, 0.3465]), "point 3 (0.2, 0.3465) is out of bounds",
                     id="outside-left"),
        pytest.param(_modified(4, [0.5, -1e-9]), "point 4", id="below"),
        pytest.param(_modified(5, [1.5, 0.0]), "out of bounds", id="right"),
        pytest.param(parabola_points()[:-1], "expected 11 points, got 10", id="too-few"),
        pytest.param(parabola_points() + [[0.5, 0.1]], "expected 11 points, got 12", id="too-many"),
        pytest.param(_modified(2, [0.5, 0.1, 0.0]), "point 2 is list", id="three-coordinates"),
        pytest.param(_modified(2, 0.5), "point 2 is float", id="scalar-point"),
        pytest.param(_modified(6, ["0.5", 0.1]), "point 6 x is str", id="string"),
        pytest.param(_modified(7, [0.5, True]), "point 7 y is bool", id="bool"),
        pytest.param(_modified(8, [math.nan, 0.1]), "point 8 x is nan", id="nan"),
        pytest.param(_modified(9, [0.5, math.inf]), "point 9 y is inf", id="inf"),
        pytest.param({"points": []}, "must return a list of 11", id="dict"),
    ],
)
def test_checker_rejects(points: Any, reason: str) -> None:
    with pytest.raises(ValueError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        EV.check_points(points)


def test_invalid_answers_through_the_executor(tmp_path: Path) -> None:
    pts = parabola_points()
    cases = [
        (points_program(_modified(3, [0.2, 0.3465])), Status.FAILED,
         "point 3 (0.2, 0.3465) is out of bounds"),
        (points_program(pts[:-1]), Status.FAILED, "expected 11 points, got 10"),
        (points_program(_modified(2, [0.5, 0.1, 0.0])), Status.FAILED, "point 2 is list"),
        (points_program(_modified(6, ["0.5", 0.1])), Status.FAILED, "point 6 x is str"),
        (points_program(_modified(7, [0.5, False])), Status.FAILED, "point 7 y is bool"),
        (f"def construct_points():\n    p = {pts!r}\n    p[8][0] = float('nan')\n    return p\n",
         Status.FAILED, "non-finite"),
        (f"def construct_points():\n    p = {pts!r}\n    p[9][1] = 1e999\n    return p\n",
         Status.FAILED, "non-finite"),
        ("def construct_points():\n    return 'points'\n", Status.FAILED, "must return a list of 11"),
        ("def construct_points():\n    raise RuntimeError('no points today')\n", Status.FAILED,
         "no points today"),
    ]
    results = support.evaluate_codes(PROB, tmp_path, [code for code, _, _ in cases])
    for (code, status, reason), r in zip(cases, results, strict=True):
        assert r.status is status, (code, r.status, r.reason)
        assert reason in r.reason, (code, r.reason)


def test_a_hanging_candidate_times_out(tmp_path: Path) -> None:
    hang = "def construct_points():\n    while True:\n        pass\n"
    support.assert_times_out(PROB, tmp_path, hang, timeout=2)


# -- 3. a short model-free run improves on the initial program -----------------------------


def test_model_free_run_improves(tmp_path: Path) -> None:
    best = support.model_free_best(PROB, tmp_path, max_programs=30, seed=1)
    assert best.score > PROB.meta["baseline"] * 1.05, best.score
