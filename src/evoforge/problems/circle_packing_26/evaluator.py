"""Evaluator for circle_packing_26: strict feasibility, finite numbers, exact shapes.

Feasibility has zero tolerance: every circle lies inside [0, 1]^2 (x - r >= 0, x + r <= 1) and
every pair satisfies dist(c_i, c_j) >= r_i + r_j, computed with math.hypot in double precision.
Candidates must leave their own rounding slack. combined_score is the sum of the radii.
"""

from __future__ import annotations

import importlib.util
import math
import sys

N = 26
BEST_KNOWN = 2.6358627564  # AlphaEvolve (2025)


def _load(program_path):
    spec = importlib.util.spec_from_file_location("candidate", program_path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["candidate"] = module
    spec.loader.exec_module(module)
    return module


def _number(value, what):
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what} is {type(value).__name__}, expected a real number")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{what} is {value}, expected a finite number")
    return value


def check_packing(centers, radii):
    """Validate and return the sum of radii; raise ValueError naming the first violation."""
    centers, radii = list(centers), list(radii)
    if len(centers) != N or len(radii) != N:
        raise ValueError(f"expected {N} centers and {N} radii, got {len(centers)} and {len(radii)}")
    pts = []
    for i, c in enumerate(centers):
        c = list(c)
        if len(c) != 2:
            raise ValueError(f"center {i} has {len(c)} coordinates, expected 2")
        pts.append((_number(c[0], f"center {i} x"), _number(c[1], f"center {i} y")))
    rs = [_number(r, f"radius {i}") for i, r in enumerate(radii)]
    for i, ((x, y), r) in enumerate(zip(pts, rs, strict=True)):
        if r < 0:
            raise ValueError(f"radius {i} is negative ({r})")
        if x - r < 0 or x + r > 1 or y - r < 0 or y + r > 1:
            raise ValueError(f"circle {i} (x={x:.6f}, y={y:.6f}, r={r:.6f}) leaves the unit square")
    for i in range(N):
        for j in range(i + 1, N):
            d = math.hypot(pts[i][0] - pts[j][0], pts[i][1] - pts[j][1])
            if d < rs[i] + rs[j]:
                raise ValueError(f"circles {i} and {j} overlap by {rs[i] + rs[j] - d:.3e}")
    return math.fsum(rs)


def evaluate(program_path):
    module = _load(program_path)
    out = module.run_packing()
    centers, radii = out[0], out[1]
    total = check_packing(centers, radii)
    return {
        "combined_score": total,
        "sum_radii": total,
        "ratio_to_best_known": total / BEST_KNOWN,
    }
