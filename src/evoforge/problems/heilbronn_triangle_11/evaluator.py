"""Evaluator for heilbronn_triangle_11 (hardened form): exact containment, exact areas.

The candidate runs in its own sandbox; ``candidate.call("construct_points", timeout=CALL_TIMEOUT)``
returns what its ``construct_points()`` returned, as plain JSON values (tuples arrive as lists, NaN
and infinities are refused by the channel). The reply must be a list of exactly 11 ``[x, y]``
pairs, every number a finite int or float (bool is not a number).

The triangle is the equilateral triangle T with vertices (0, 0), (1, 0) and (1/2, sqrt(3)/2), area
sqrt(3)/4. Every point must lie in the closed triangle, tested exactly (zero tolerance): the
coordinates are converted to exact rationals (``fractions.Fraction``; every float is one) and
the point is inside iff

    y >= 0,   x >= 0 and y^2 <= 3 x^2   (i.e. y <= sqrt(3) x),
              x <= 1 and y^2 <= 3 (1 - x)^2   (i.e. y <= sqrt(3) (1 - x)),

which compares against the true irrational edges, not a rounded sqrt(3). The area of each of the
165 triangles is computed exactly in rationals; the score is

    combined_score = min area / (sqrt(3) / 4)

(the smallest area relative to the area of T, i.e. as in a unit-area triangle), computed as
``float(min_area) / (math.sqrt(3) / 4)``. Collinear or repeated points give area 0 and score 0: a
valid but bad answer, not an error. Stdlib only, deterministic.
"""

from __future__ import annotations

import math
from fractions import Fraction
from itertools import combinations

from evoforge.evaluation_result import EvaluationResult

N = 11
TRIANGLE_AREA = math.sqrt(3) / 4
BEST_KNOWN = 0.0365  # AlphaEvolve (2025), min area in a unit-area triangle (= our normalisation)
CALL_TIMEOUT = 10.0  # seconds for construct_points(); the evaluation as a whole has evaluation.timeout


def _describe(value: object) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:80]}{'...' if len(text) > 80 else ''}"


def _exact(value: object, what: str) -> Fraction:
    if type(value) is not int and type(value) is not float:  # bool, str, None, list... rejected
        raise ValueError(f"{what} is {_describe(value)}, expected a real number")
    if type(value) is float and not math.isfinite(value):
        raise ValueError(f"{what} is {value}, expected a finite number")
    return Fraction(value)


def in_triangle(x: Fraction, y: Fraction) -> bool:
    """Exactly: is (x, y) in the closed triangle (0, 0), (1, 0), (1/2, sqrt(3)/2)?"""
    if y < 0 or x < 0 or x > 1:
        return False
    return y * y <= 3 * x * x and y * y <= 3 * (1 - x) * (1 - x)


def check_points(points: object) -> list[tuple[Fraction, Fraction]]:
    """Validate the answer (a list of N [x, y] pairs inside the triangle) and return the points
    as exact rationals; raise ValueError naming the first violation."""
    if type(points) is not list:
        raise ValueError(f"construct_points() must return a list of {N} (x, y) points, "
                         f"got {_describe(points)}")
    if len(points) != N:
        raise ValueError(f"expected {N} points, got {len(points)}")
    exact: list[tuple[Fraction, Fraction]] = []
    for i, p in enumerate(points):
        if type(p) is not list or len(p) != 2:
            raise ValueError(f"point {i} is {_describe(p)}, expected an (x, y) pair")
        x, y = _exact(p[0], f"point {i} x"), _exact(p[1], f"point {i} y")
        if not in_triangle(x, y):
            raise ValueError(f"point {i} ({p[0]!r}, {p[1]!r}) is out of bounds: it lies outside the "
                             "triangle (0, 0), (1, 0), (1/2, sqrt(3)/2)")
        exact.append((x, y))
    return exact


def smallest_triangle(points: list[tuple[Fraction, Fraction]]) -> tuple[Fraction, tuple[int, int, int]]:
    """The exact smallest area over all triples, and the (first) triple reaching it."""
    best: Fraction | None = None
    where = (0, 1, 2)
    for i, j, k in combinations(range(len(points)), 3):
        (px, py), (qx, qy), (rx, ry) = points[i], points[j], points[k]
        area = abs((qx - px) * (ry - py) - (qy - py) * (rx - px)) / 2
        if best is None or area < best:
            best, where = area, (i, j, k)
    assert best is not None
    return best, where


def score_points(points: object) -> float:
    """Validate and score: the smallest triangle area divided by the triangle's area sqrt(3)/4."""
    area, _ = smallest_triangle(check_points(points))
    return float(area) / TRIANGLE_AREA


def evaluate(candidate) -> EvaluationResult:
    points = candidate.call("construct_points", timeout=CALL_TIMEOUT)
    area, (i, j, k) = smallest_triangle(check_points(points))
    score = float(area) / TRIANGLE_AREA
    feedback = (f"valid: the smallest triangle is formed by points {i}, {j}, {k}, with normalised area "
                f"{score:.8f} (best known {BEST_KNOWN})")
    if area == 0:
        feedback += "; these three points are collinear (or coincide), so the score is 0"
    return EvaluationResult(
        metrics={"combined_score": score, "min_area": float(area),
                 "ratio_to_best_known": score / BEST_KNOWN},
        artifacts={"feedback": feedback},
    )
