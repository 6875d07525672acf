"""Circle packing in the unit square, shared by circle_packing_26 and circle_packing_32.

The candidate runs in its own sandbox; ``candidate.call("run_packing", timeout=CALL_TIMEOUT)``
returns what its ``run_packing()`` returned, as plain JSON values (tuples arrive as lists, NaN and
infinities are refused by the channel). The reply must be exactly ``[centers, radii]``: a list of
n ``[x, y]`` pairs and a list of n radii, every number a finite int or float (bool is not a number).

Feasibility has zero tolerance: every circle lies inside [0, 1]^2 (x - r >= 0, x + r <= 1, same for
y) and every pair satisfies math.hypot(dx, dy) >= r_i + r_j, in double precision. Radii must be
>= 0. Candidates must leave their own rounding slack. The score is the sum of the radii
(math.fsum). Stdlib only, deterministic: the same answer always gets the same score.
"""

from __future__ import annotations

import math
from typing import Any

from evoforge.evaluation_result import EvaluationResult

CALL_TIMEOUT = 10.0  # seconds for run_packing(); the evaluation as a whole has evaluation.timeout


def _describe(value: object) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:80]}{'...' if len(text) > 80 else ''}"


def _number(value: object, what: str) -> float:
    if type(value) is not int and type(value) is not float:  # bool, str, None, list... rejected
        raise ValueError(f"{what} is {_describe(value)}, expected a real number")
    try:
        number = float(value)
    except OverflowError:
        raise ValueError(f"{what} is an integer too large for a float") from None
    if not math.isfinite(number):
        raise ValueError(f"{what} is {number}, expected a finite number")
    return number


def check_packing(centers: object, radii: object, n: int) -> float:
    """Validate a packing and return the sum of its radii; raise ValueError naming the first
    violation. ``centers`` must be a list of n [x, y] lists, ``radii`` a list of n numbers."""
    if type(centers) is not list or type(radii) is not list:
        raise ValueError(f"centers and radii must be lists, got {type(centers).__name__} and "
                         f"{type(radii).__name__}")
    if len(centers) != n or len(radii) != n:
        raise ValueError(f"expected {n} centers and {n} radii, got {len(centers)} and {len(radii)}")
    pts: list[tuple[float, float]] = []
    for i, c in enumerate(centers):
        if type(c) is not list or len(c) != 2:
            raise ValueError(f"center {i} is {_describe(c)}, expected an (x, y) pair")
        pts.append((_number(c[0], f"center {i} x"), _number(c[1], f"center {i} y")))
    rs = [_number(r, f"radius {i}") for i, r in enumerate(radii)]
    for i, ((x, y), r) in enumerate(zip(pts, rs, strict=True)):
        if r < 0:
            raise ValueError(f"radius {i} is negative ({r!r})")
        if x - r < 0 or x + r > 1 or y - r < 0 or y + r > 1:
            raise ValueError(f"circle {i} (x={x!r}, y={y!r}, r={r!r}) is out of bounds: "
                             "it leaves the unit square")
    for i in range(n):
        for j in range(i + 1, n):
            d = math.hypot(pts[i][0] - pts[j][0], pts[i][1] - pts[j][1])
            if d < rs[i] + rs[j]:
                raise ValueError(f"circles {i} and {j} overlap by {rs[i] + rs[j] - d:.3e} "
                                 f"(distance {d!r} < r{i} + r{j} = {rs[i] + rs[j]!r})")
    return math.fsum(rs)


def evaluate_packing(candidate: Any, n: int, best_known: float) -> EvaluationResult:
    """The whole evaluation: call ``run_packing()``, check it, score and describe it."""
    out = candidate.call("run_packing", timeout=CALL_TIMEOUT)
    if type(out) is not list or len(out) != 2:
        raise ValueError(f"run_packing() must return (centers, radii), got {_describe(out)}")
    total = check_packing(out[0], out[1], n)
    radii = [float(r) for r in out[1]]
    ratio = total / best_known
    feedback = (f"valid packing of {n} circles: sum of radii {total:.10f} = {ratio:.2%} of the best "
                f"known {best_known}; radii range from {min(radii):.6f} to {max(radii):.6f}")
    return EvaluationResult(
        metrics={
            "combined_score": total,
            "sum_radii": total,
            "ratio_to_best_known": ratio,
            "min_radius": min(radii),
        },
        artifacts={"feedback": feedback},
    )
