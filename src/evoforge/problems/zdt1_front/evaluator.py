"""Evaluator for zdt1_front (hardened form): ZDT1 (Zitzler, Deb & Thiele, 2000) with n = 5.

The candidate's ``solution()`` returns the decision vector x: five finite numbers in [0, 1].

    f1 = x[0]
    g  = 1 + 9 * sum(x[1:]) / 4
    f2 = g * (1 - sqrt(f1 / g))

Both f1 and f2 are minimised. The Pareto front is g = 1 (x[1:] all 0): f2 = 1 - sqrt(f1) for
f1 in [0, 1]. ``combined_score = 1 - g`` (0 on the front, lower further away) is the scalar
score a single-objective view of the run uses; the multi-objective run (config.yaml) ranks
programs by (f1, f2) and measures the front by its hypervolume.
"""

from __future__ import annotations

import math

from evoforge.evaluation_result import EvaluationResult

N = 5
CALL_TIMEOUT = 10.0


def parse(x: object) -> list[float]:
    """Check an answer: a list of exactly N finite numbers in [0, 1] (bools are not numbers)."""
    if type(x) is not list:
        raise ValueError(f"solution() must return a list of {N} numbers, got {type(x).__name__}")
    if len(x) != N:
        raise ValueError(f"expected exactly {N} numbers, got {len(x)}")
    out = []
    for i, v in enumerate(x):
        if type(v) is not int and type(v) is not float:
            raise ValueError(f"x[{i}] is {type(v).__name__}, expected a number")
        if not math.isfinite(v):
            raise ValueError(f"x[{i}] is {v!r}, expected a finite number")
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"x[{i}] = {v!r} is outside [0, 1]")
        out.append(float(v))
    return out


def zdt1(x: list[float]) -> tuple[float, float, float]:
    """(f1, f2, g) of a checked decision vector."""
    f1 = x[0]
    g = 1.0 + 9.0 * math.fsum(x[1:]) / (N - 1)
    f2 = g * (1.0 - math.sqrt(f1 / g))
    return f1, f2, g


def evaluate(candidate) -> EvaluationResult:
    x = parse(candidate.call("solution", timeout=CALL_TIMEOUT))
    f1, f2, g = zdt1(x)
    feedback = (f"f1 = {f1:.6g}, f2 = {f2:.6g} (both minimised); g - 1 = {g - 1:.6g} is the "
                "distance from the Pareto front f2 = 1 - sqrt(f1), reached when x[1:] are all 0")
    return EvaluationResult(metrics={"f1": f1, "f2": f2, "combined_score": 1.0 - g},
                            artifacts={"feedback": feedback})
