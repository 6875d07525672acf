"""A deceptive trap, summed over four settings: combined_score = sum of trap(x_i).

trap(x) = exp(-(x - 1)^2 / (2 * 0.8^2)) + 2 exp(-(x - 2)^2 / (2 * 0.2^2))

The settings start at 1.2-1.4, on the shoulder of a broad peak of height 1 at x = 1: every step
towards it pays a little. The narrow peak (height 2.46 at about x = 1.99) is 0.6-0.8 away on the
other side, behind a dip (trap(1.45) is about 0.9, below the start's 0.93): a handful of
perturbation steps, each one worse before the last ones climb. Refining the best program
converges on the broad peaks (score 4.0); the global maximum (about 9.85, every setting near
1.99) needs programs worse than the best kept and mutated.
"""

import math

N = 4
BROAD_AT, BROAD_WIDTH = 1.0, 0.8
NARROW_AT, NARROW_WIDTH, NARROW_HEIGHT = 2.0, 0.2, 2.0


def trap(x):
    return (math.exp(-((x - BROAD_AT) ** 2) / (2 * BROAD_WIDTH**2))
            + NARROW_HEIGHT * math.exp(-((x - NARROW_AT) ** 2) / (2 * NARROW_WIDTH**2)))


def _load(program_path):
    ns = {"__name__": "candidate"}
    with open(program_path) as f:
        exec(compile(f.read(), program_path, "exec"), ns)
    return ns


def evaluate(program_path):
    x = [float(v) for v in _load(program_path)["settings"]()]
    if len(x) != N or not all(math.isfinite(v) for v in x):
        raise ValueError(f"settings() must return {N} finite numbers, got {x!r}")
    return {"combined_score": sum(trap(v) for v in x),
            "on_the_narrow_peak": sum(abs(v - NARROW_AT) < 2 * NARROW_WIDTH for v in x)}
