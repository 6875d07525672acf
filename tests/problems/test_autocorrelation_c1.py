"""autocorrelation_c1: the exact autoconvolution formula against hand-computed values, exact
rationals and a direct numerical integration; strict rejection of invalid answers through the
real executor; a short model-free run that improves on the initial program."""

from __future__ import annotations

import random
from fractions import Fraction
from pathlib import Path

import pytest
import support

from evoforge.problem import Problem
from evoforge.program import Status

PROB = Problem.load("autocorrelation_c1")
EV = support.load_evaluator(PROB)


def program(body: str) -> str:
    return f"import math\n\nimport numpy as np\n\n\ndef step_heights():\n{body}\n"


def exact_ratio(heights: list[float]) -> Fraction:
    """2n max_m c_m / (sum h)^2 with exact rationals, the definition spelled out."""
    h = [Fraction(x) for x in heights]
    n = len(h)
    c = [sum((h[i] * h[m - i] for i in range(max(0, m - n + 1), min(m, n - 1) + 1)), Fraction(0))
         for m in range(2 * n - 1)]
    return 2 * n * max(c) / sum(h) ** 2


def direct_autoconvolution(heights: list[float], t: Fraction) -> Fraction:
    """(f*f)(t) = sum_ij h_i h_j |I_i intersected with (t - I_j)| with exact rationals, straight
    from the definition (no breakpoint formula): an independent check of the evaluator."""
    n = len(heights)
    w = Fraction(1, 2 * n)
    starts = [Fraction(-1, 4) + i * w for i in range(n)]
    total = Fraction(0)
    for i, a in enumerate(starts):
        for j, b in enumerate(starts):
            lo, hi = max(a, t - b - w), min(a + w, t - b)  # t - I_j = (t - b - w, t - b]
            if hi > lo:
                total += Fraction(heights[i]) * Fraction(heights[j]) * (hi - lo)
    return total


def test_known_values() -> None:
    assert EV.autoconvolution_ratio([1.0])[0] == 2.0  # f constant on [-1/4, 1/4]
    assert EV.autoconvolution_ratio([3] * 17)[0] == 2.0
    # f = 1 on [-1/4, 0): integral 1/4, max f*f = 1/4 at t = -1/4, ratio 4
    score, details = EV.autoconvolution_ratio([1.0, 0.0])
    assert score == 4.0 and details["peak_t"] == -0.25
    # h = (1, 2): c = (1, 4, 4), ratio = 2 * 2 * 4 / 3^2
    assert EV.autoconvolution_ratio([1.0, 2.0])[0] == 16 / 9
    # scale invariance, also across extreme magnitudes (scaled by powers of two: exact)
    h = [0.3, 1.7, 0.2, 0.9, 1.1]
    assert EV.autoconvolution_ratio([x * 2.0**900 for x in h])[0] == EV.autoconvolution_ratio(h)[0]
    assert EV.autoconvolution_ratio([x * 2.0**-1000 for x in h])[0] == EV.autoconvolution_ratio(h)[0]


def test_the_score_is_the_exact_ratio_rounded_once() -> None:
    rng = random.Random(7)
    for n in (1, 2, 3, 8, 25):
        h = [rng.random() * rng.choice((1e-8, 1.0, 1e8)) for _ in range(n)]
        assert EV.autoconvolution_ratio(h)[0] == float(exact_ratio(h))
    flat = [1.0, 0.0, 1.0, 0.0, 1.0]  # several equal maxima of c
    assert EV.autoconvolution_ratio(flat)[0] == float(exact_ratio(flat))


def test_the_breakpoint_formula_matches_the_definition() -> None:
    rng = random.Random(3)
    for n in (1, 2, 3, 6):
        h = [rng.random() for _ in range(n)]
        integral = sum(Fraction(x) for x in h) / (2 * n)
        at_breakpoints = [direct_autoconvolution(h, Fraction(-1, 2) + Fraction(k, 2 * n))
                          for k in range(2 * n + 1)]
        assert at_breakpoints[0] == at_breakpoints[-1] == 0
        assert EV.autoconvolution_ratio(h)[0] == float(max(at_breakpoints) / integral**2)
        between = [direct_autoconvolution(h, Fraction(rng.randrange(-10**6, 10**6), 2 * 10**6))
                   for _ in range(30)]
        assert max(between) <= max(at_breakpoints)  # piecewise linear: the maximum is a breakpoint


def test_initial_program_construction_scores_its_baseline() -> None:
    n, offset, power = 50, 0.1, 0.25
    heights = [((i + 0.5) / n + offset) ** (-power) for i in range(n)]
    assert EV.autoconvolution_ratio(heights)[0] == PROB.meta["baseline"]


def test_ten_thousand_steps_are_accepted_and_more_are_not() -> None:
    rng = random.Random(1)
    h = [rng.random() for _ in range(EV.MAX_STEPS)]
    score, details = EV.autoconvolution_ratio(h)
    assert 1.0 < score < 2.1 and details["n_steps"] == EV.MAX_STEPS
    with pytest.raises(ValueError, match="more than the limit"):
        EV.autoconvolution_ratio(h + [1.0])


@pytest.mark.parametrize(
    ("heights", "reason"),
    [
        pytest.param([1.0, -0.5, 1.0], "negative", id="negative"),
        pytest.param([1.0, float("nan")], "finite", id="nan"),
        pytest.param([1.0, float("inf")], "finite", id="inf"),
        pytest.param([], "empty", id="empty"),
        pytest.param([0.0, 0, 0.0], "all heights are 0", id="all-zero"),
        pytest.param([1.0, True], "bool", id="bool"),
        pytest.param([1.0, "2"], "str", id="string"),
        pytest.param([1.0, [2.0]], "list", id="nested"),
        pytest.param({"h": [1.0]}, "list of numbers", id="dict"),
        pytest.param([1.0, 10**400], "too large", id="huge-int"),
    ],
)
def test_invalid_answers_are_rejected(heights: object, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        EV.autoconvolution_ratio(heights)


def test_through_the_executor(tmp_path: Path) -> None:
    codes = [
        PROB.initial_code,
        program("    return np.ones(40)"),  # a numpy array: constant f, ratio 2
        program("    return [1, 2]"),
        program("    return [1.0, -1.0, 2.0]"),
        program("    return [1.0, float('nan')]"),
        program("    return []"),
        program("    return [0.0] * 5"),
        program("    return [1.0] * 10001"),
        program("    return 'abc'"),
    ]
    results = support.evaluate_codes(PROB, tmp_path, codes, concurrent=True)
    init, const, two = results[:3]
    assert init.status is Status.OK and init.score == PROB.meta["baseline"], (init.reason, init.artifacts)
    assert "flat-topped" in init.artifacts["feedback"]
    assert const.status is Status.OK and const.score == 2.0
    assert two.status is Status.OK and two.score == 16 / 9 and two.metrics["n_steps"] == 2
    for r, reason in zip(results[3:], ("negative", "non-finite", "empty", "all heights are 0",
                                       "more than the limit", "list of numbers"), strict=True):
        assert r.status is Status.FAILED and reason in r.reason, (r.status, r.reason)


def test_a_hanging_candidate_times_out(tmp_path: Path) -> None:
    hang = program("    while True:\n        pass")
    support.assert_times_out(PROB, tmp_path, hang, timeout=3)


def test_a_short_model_free_run_improves(tmp_path: Path) -> None:
    best = support.model_free_best(PROB, tmp_path, max_programs=8, seed=1)
    assert best.score < PROB.meta["baseline"], best.score
