"""Shifted Rastrigin in 6 dimensions: combined_score = -f(point()), 0 at the optimum.

f(x) = sum_i [ (x_i - o_i)^2 - 10 cos(2 pi (x_i - o_i)) + 10 ]: a local minimum near every point
of the integer lattice around o, the global one at o (combined_score 0).
"""

import math

SHIFT = (0.5, -1.5, 1.0, 2.0, -0.5, 1.5)


def _load(program_path):
    ns = {"__name__": "candidate"}
    with open(program_path) as f:
        exec(compile(f.read(), program_path, "exec"), ns)
    return ns


def rastrigin(x):
    total = 0.0
    for xi, oi in zip(x, SHIFT, strict=True):
        z = xi - oi
        total += z * z - 10.0 * math.cos(2.0 * math.pi * z) + 10.0
    return total


def evaluate(program_path):
    x = [float(v) for v in _load(program_path)["point"]()]
    if len(x) != len(SHIFT) or not all(math.isfinite(v) for v in x):
        raise ValueError(f"point() must return {len(SHIFT)} finite numbers, got {x!r}")
    return {"combined_score": -rastrigin(x)}
