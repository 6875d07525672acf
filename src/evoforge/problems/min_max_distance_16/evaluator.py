"""Evaluator for min_max_distance_16 (hardened form).

The candidate's ``construct_points()`` returns 16 points (x, y). The score is
(max pairwise distance / min pairwise distance)^2, computed EXACTLY: every float is converted to
a Fraction (exact), the 120 squared distances are exact rationals, and only the final ratio is
rounded once to the nearest double. Lower is better. Coincident points (min distance 0) are
invalid. There is no tolerance to document: no constraint is checked in floating point.
"""

from __future__ import annotations

from fractions import Fraction

from evoforge.evaluation_result import EvaluationResult

N = 16
BEST_KNOWN = 12.889266  # AlphaEvolve (2025), (max/min distance)^2 for 16 points in the plane
CALL_TIMEOUT = 20.0  # seconds for construct_points(); the evaluation timeout (config) is larger


def _coordinate(value: object, what: str) -> Fraction:
    if type(value) is not int and type(value) is not float:
        raise ValueError(f"{what} is {type(value).__name__}, expected a real number")
    try:
        return Fraction(value)
    except (OverflowError, ValueError) as e:  # inf / nan (the channel already refuses them)
        raise ValueError(f"{what} is {value!r}, expected a finite number") from e


def parse_points(points: object) -> list[tuple[Fraction, Fraction]]:
    """Check the shape and types of an answer: a list of exactly 16 pairs of finite numbers."""
    if type(points) is not list:
        raise ValueError(f"construct_points() must return a list of {N} (x, y) points, "
                         f"got {type(points).__name__}")
    if len(points) != N:
        raise ValueError(f"expected exactly {N} points, got {len(points)}")
    out = []
    for i, p in enumerate(points):
        if type(p) is not list or len(p) != 2:
            raise ValueError(f"point {i} must be a pair (x, y), got {str(p)[:80]}")
        out.append((_coordinate(p[0], f"point {i} x"), _coordinate(p[1], f"point {i} y")))
    return out


def distance_ratio_squared(points: object) -> tuple[float, dict[str, int]]:
    """(max pairwise distance / min pairwise distance)^2 of 16 points, exact then rounded once.

    Returns the score and the index pairs attaining the min and the max. Raises ValueError
    with a clear reason for a wrong shape, a non-number, or coincident points."""
    pts = parse_points(points)
    dmin = dmax = None
    imin = imax = (0, 0)
    for i in range(N):
        xi, yi = pts[i]
        for j in range(i + 1, N):
            dx, dy = xi - pts[j][0], yi - pts[j][1]
            d2 = dx * dx + dy * dy
            if d2 == 0:
                raise ValueError(f"points {i} and {j} coincide, so the minimum distance is 0 and "
                                 "the ratio is undefined; all 16 points must be distinct")
            if dmin is None or d2 < dmin:
                dmin, imin = d2, (i, j)
            if dmax is None or d2 > dmax:
                dmax, imax = d2, (i, j)
    assert dmin is not None and dmax is not None
    pairs = {"min_i": imin[0], "min_j": imin[1], "max_i": imax[0], "max_j": imax[1]}
    return float(dmax / dmin), pairs


def evaluate(candidate) -> EvaluationResult:
    points = candidate.call("construct_points", timeout=CALL_TIMEOUT)
    score, pairs = distance_ratio_squared(points)
    feedback = (
        f"(max/min distance)^2 = {score:.10g} (best known {BEST_KNOWN}, lower is better). "
        f"The closest pair is points {pairs['min_i']} and {pairs['min_j']}, the farthest pair is "
        f"points {pairs['max_i']} and {pairs['max_j']}."
    )
    return EvaluationResult(
        metrics={
            "combined_score": score,
            "distance_ratio": score ** 0.5,
            "gap_to_best_known": score - BEST_KNOWN,
        },
        artifacts={"feedback": feedback},
    )
