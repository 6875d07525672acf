"""min_max_distance_16: exact scoring of known constructions, strict rejection of invalid answers
through the real executor, and a short model-free run that improves on the initial program."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import pytest
import support

from evoforge.problem import Problem
from evoforge.program import Status

PROB = Problem.load("min_max_distance_16")
EV = support.load_evaluator(PROB)
GRID = [[float(i), float(j)] for i in range(4) for j in range(4)]


def program(body: str) -> str:
    return f"import math\n\n\ndef construct_points():\n{body}\n"


def test_known_constructions_score_exactly() -> None:
    assert EV.distance_ratio_squared(GRID)[0] == 18.0  # diagonal^2 / side^2 = 18 / 1
    # scale, translate and integer coordinates change nothing; the computation is exact
    tiny = [[x * 2.0 ** -600 + 3.0 * 2.0 ** -600, y * 2.0 ** -600] for x, y in GRID]
    assert EV.distance_ratio_squared(tiny)[0] == 18.0
    assert EV.distance_ratio_squared([[i, j] for i in range(4) for j in range(4)])[0] == 18.0
    # a regular 16-gon: (diameter / side)^2 = 1 / sin(pi/16)^2, up to the rounding of the inputs
    poly = [[math.cos(2 * math.pi * k / 16), math.sin(2 * math.pi * k / 16)] for k in range(16)]
    assert math.isclose(EV.distance_ratio_squared(poly)[0], 1 / math.sin(math.pi / 16) ** 2, rel_tol=1e-12)
    # the result is the exact rational ratio rounded once
    pts = [[0.1 * k, 0.3 * k * k] for k in range(16)]
    d2 = [(Fraction(a[0]) - Fraction(b[0])) ** 2 + (Fraction(a[1]) - Fraction(b[1])) ** 2
          for i, a in enumerate(pts) for b in pts[i + 1:]]
    assert EV.distance_ratio_squared(pts)[0] == float(max(d2) / min(d2))
    score, pairs = EV.distance_ratio_squared(GRID)
    assert GRID[pairs["max_i"]] in ([0.0, 0.0], [0.0, 3.0], [3.0, 0.0], [3.0, 3.0])


@pytest.mark.parametrize(
    ("points", "reason"),
    [
        pytest.param(GRID[:15] + [GRID[0]], "coincide", id="coincident"),
        pytest.param(GRID[:15], "exactly 16", id="too-few"),
        pytest.param(GRID + [[9.0, 9.0]], "exactly 16", id="too-many"),
        pytest.param(GRID[:15] + [[1.0, 2.0, 3.0]], "pair", id="three-coordinates"),
        pytest.param(GRID[:15] + [[True, 5.0]], "bool", id="bool"),
        pytest.param(GRID[:15] + [["5", 5.0]], "str", id="string"),
        pytest.param(GRID[:15] + [[float("nan"), 5.0]], "finite", id="nan"),
        pytest.param(GRID[:15] + [[float("inf"), 5.0]], "finite", id="inf"),
        pytest.param({"points": GRID}, "list", id="dict"),
    ],
)
def test_invalid_answers_are_rejected(points: object, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        EV.distance_ratio_squared(points)


def test_through_the_executor(tmp_path: Path) -> None:
    grid = "    return [(i, j) for i in range(4) for j in range(4)]"
    codes = [
        PROB.initial_code,
        program(grid),
        program("    return [(i % 4, 0.0) for i in range(16)]"),  # coincident points
        program("    return [(i, 0.0) for i in range(15)]"),
        program("    return [(i, float('nan')) for i in range(16)]"),
        program("    return [(i, str(i)) for i in range(16)]"),
        program("    return [(i, math.inf) for i in range(16)]"),
    ]
    results = support.evaluate_codes(PROB, tmp_path, codes, concurrent=True)
    ok, grid_r, coincide, short, nan, text, inf = results
    assert ok.status is Status.OK and ok.score == PROB.meta["baseline"], (ok.reason, ok.artifacts)
    assert grid_r.status is Status.OK and grid_r.score == 18.0
    assert "closest pair" in grid_r.artifacts["feedback"]
    assert math.isclose(grid_r.metrics["distance_ratio"], math.sqrt(18))
    for r, reason in ((coincide, "coincide"), (short, "exactly 16"), (nan, "non-finite"),
                      (text, "expected a real number"), (inf, "non-finite")):
        assert r.status is Status.FAILED and reason in r.reason, (r.status, r.reason)


def test_a_hanging_candidate_times_out(tmp_path: Path) -> None:
    hang = program("    while True:\n        pass")
    support.assert_times_out(PROB, tmp_path, hang, timeout=3)


def test_a_short_model_free_run_improves(tmp_path: Path) -> None:
    best = support.model_free_best(PROB, tmp_path, max_programs=12, seed=3)
    assert best.score < PROB.meta["baseline"], best.score
