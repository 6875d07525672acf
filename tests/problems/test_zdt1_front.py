"""zdt1_front: ZDT1 values of known points, invalid answers rejected with a reason (through the
real executor too). Its short model-free run (hypervolume growth, resume, CLI) is in
tests/test_pareto.py."""

from __future__ import annotations

import math

import pytest
import support

from evoforge.problem import Problem
from evoforge.program import Status

PROB = Problem.load("zdt1_front")
EV = support.load_evaluator(PROB)


def test_known_points() -> None:
    for f1 in (0.0, 0.25, 1.0):  # on the Pareto front: g = 1, f2 = 1 - sqrt(f1)
        got = EV.zdt1(EV.parse([f1, 0.0, 0.0, 0.0, 0.0]))
        assert got == pytest.approx((f1, 1 - math.sqrt(f1), 1.0))
    f1, f2, g = EV.zdt1(EV.parse([1.0, 1.0, 1.0, 1.0, 1.0]))  # the worst corner
    assert (f1, g) == (1.0, 10.0) and f2 == pytest.approx(10 * (1 - math.sqrt(0.1)))


@pytest.mark.parametrize(("x", "reason"), [
    ([0.5] * 4, "exactly 5"),
    ([0.5] * 6, "exactly 5"),
    ([0.5, 0.1, 0.1, 0.1, 1.5], "outside"),
    ([-0.1, 0.1, 0.1, 0.1, 0.1], "outside"),
    ([0.5, True, 0.1, 0.1, 0.1], "bool"),
    ([0.5, "0", 0.1, 0.1, 0.1], "str"),
    ([float("nan"), 0.1, 0.1, 0.1, 0.1], "finite"),
    ((0.5, 0.1, 0.1, 0.1, 0.1), "list"),
])
def test_invalid_answers_are_rejected(x: object, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        EV.parse(x)


def test_through_the_executor(tmp_path) -> None:
    good = "def solution():\n    return [0.25, 0.0, 0.0, 0.0, 0.0]\n"
    bad = "def solution():\n    return [0.25, 0.0, 0.0, 0.0, 2.0]\n"
    r_good, r_bad = support.evaluate_codes(PROB, tmp_path, [good, bad])
    assert r_good.status is Status.OK and r_good.score == 0.0
    assert r_good.metrics["f2"] == pytest.approx(0.5)
    assert r_bad.status is Status.FAILED and "outside [0, 1]" in r_bad.reason
