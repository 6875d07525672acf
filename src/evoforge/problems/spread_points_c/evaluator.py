"""Evaluator for spread_points_c: N points in the unit square, the smallest pairwise distance
maximised, found by a Python driver and a C kernel that are both evolved (a program of several
files: ``initial_program/`` holds driver.py, kernel.c and the fixed geometry.h).

Hardened form: inside the candidate's sandbox ``gcc`` compiles ``program/kernel.c`` into
``program/libkernel.so`` (a compile error fails the candidate with gcc's message), then
``driver:solve(N)`` is called. Its answer is checked here: exactly N pairs of finite numbers
(not booleans) inside [0, 1] x [0, 1]. The score is the smallest distance between two points,
computed here; whatever the candidate computed itself does not count.
"""

from __future__ import annotations

import math

N = 24
COMPILE = ["gcc", "-O2", "-std=c99", "-shared", "-fPIC", "-o", "program/libkernel.so",
           "program/kernel.c", "-lm"]


def check_points(points: object, n: int = N) -> list[tuple[float, float]]:
    """``points`` as n (x, y) tuples, or ValueError naming what is wrong."""
    if type(points) is not list or len(points) != n:
        raise ValueError(f"solve({n}) must return a list of {n} [x, y] pairs, got "
                         f"{type(points).__name__} of length {len(points) if type(points) is list else '?'}")
    out = []
    for i, p in enumerate(points):
        if type(p) is not list or len(p) != 2 or not all(type(c) in (int, float) for c in p):
            raise ValueError(f"point {i} is not an [x, y] pair of numbers: {str(p)[:80]}")
        x, y = float(p[0]), float(p[1])
        if not (math.isfinite(x) and math.isfinite(y) and 0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
            raise ValueError(f"point {i} ({x!r}, {y!r}) is outside the unit square")
        out.append((x, y))
    return out


def min_distance(points: list[tuple[float, float]]) -> float:
    return min(math.dist(points[i], points[j])
               for i in range(len(points)) for j in range(i + 1, len(points)))


def evaluate(candidate) -> dict[str, float]:
    build = candidate.run(COMPILE, timeout=60)
    if build.returncode != 0:
        raise ValueError(f"kernel.c does not compile: {build.stderr[-1500:]}")
    points = check_points(candidate.call("driver:solve", N, timeout=30))
    d = min_distance(points)
    return {"combined_score": d, "min_distance": d, "seconds": candidate.last_elapsed}
