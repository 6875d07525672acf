"""Six points in the unit square [0, 1]^2: combined_score = the smallest pairwise distance.

Feasibility: every coordinate must lie in [0, 1]; a point outside the square is an error (the
program fails), not a low score. The best possible value is sqrt(13)/6 = 0.600925...
"""

import math

N = 6


def _load(program_path):
    ns = {"__name__": "candidate"}
    with open(program_path) as f:
        exec(compile(f.read(), program_path, "exec"), ns)
    return ns


def evaluate(program_path):
    pts = [(float(x), float(y)) for x, y in _load(program_path)["points"]()]
    if len(pts) != N:
        raise ValueError(f"points() must return {N} points, got {len(pts)}")
    for i, (x, y) in enumerate(pts):
        if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
            raise ValueError(f"point {i} = ({x}, {y}) lies outside the unit square")
    dmin = min(math.dist(pts[i], pts[j]) for i in range(N) for j in range(i + 1, N))
    return {"combined_score": dmin}
