"""Evaluator for autocorrelation_c1 (hardened form): AlphaEvolve's first autocorrelation inequality.

The candidate's ``step_heights()`` returns heights h_0..h_{n-1} >= 0 (not all 0) of the step
function f = h_i on the i-th of n equal steps of [-1/4, 1/4]. The score is

    R(f) = max_t (f*f)(t) / (integral of f)^2            (lower is better)

computed exactly from the heights (no sampling, no quadrature):

* Steps have width w = 1/(2n); step i is I_i = [a_i, a_i + w) with a_i = -1/4 + i*w, so
  integral f = w * sum_i h_i.
* 1_{I_i} * 1_{I_j} is a tent: 0 at t = a_i + a_j, w at a_i + a_j + w, 0 at a_i + a_j + 2w.
  Since a_i + a_j = -1/2 + (i + j) w, every tent is linear between consecutive points of the grid
  t_k = -1/2 + k w (k = 0..2n), so f*f is piecewise linear on that grid and its maximum is
  attained at a grid point. The tent of (i, j) is non-zero on the grid only at k = i + j + 1, so

      (f*f)(t_k) = w * c_{k-1},   c_m = sum_{i+j=m} h_i h_j  (the discrete autoconvolution),

  and (f*f)(t_0) = (f*f)(t_{2n}) = 0.
* Hence R(f) = w max_m c_m / (w sum h)^2 = 2n * max_m c_m / (sum_i h_i)^2. A constant f gives 2.

Numerics: R is scale invariant, so the heights are first scaled by a power of two (exact) to
avoid overflow. numpy computes all c_m in double precision; every c_m is a sum of non-negative
products, so its relative error is at most about (n+1) * 2^-53 (< 1.2e-12 for n = 10,000). Every
m whose float value lies within that error band of the maximum is then recomputed exactly with
Python integers (each double is an exact dyadic rational), and the score is the exact ratio
rounded once to the nearest double. If more than MAX_EXACT values fall in the band (a flat top
by construction), the largest MAX_EXACT by float value are recomputed exactly; the score is then
exact up to a relative 2.4e-12 at most.
"""

from __future__ import annotations

import math
import operator
from fractions import Fraction

import numpy as np

from evoforge.evaluation_result import EvaluationResult

MAX_STEPS = 10_000
MAX_EXACT = 64
BEST_KNOWN = 1.5052939684  # AlphaEvolve (2025); later improvements to about 1.5032 reported
CALL_TIMEOUT = 50.0  # seconds for step_heights(); the evaluation timeout (config) is larger
MAX_REPLY_BYTES = 4 * 1024 * 1024


def parse_heights(heights: object) -> list[float]:
    """Check an answer: a non-empty list of at most MAX_STEPS finite numbers >= 0, not all 0."""
    if type(heights) is not list:
        raise ValueError(f"step_heights() must return a list of numbers, got {type(heights).__name__}")
    n = len(heights)
    if n == 0:
        raise ValueError("step_heights() returned an empty list; give at least one step height")
    if n > MAX_STEPS:
        raise ValueError(f"{n} steps is more than the limit of {MAX_STEPS}")
    out = []
    for i, h in enumerate(heights):
        if type(h) is not int and type(h) is not float:
            raise ValueError(f"height {i} is {type(h).__name__} ({str(h)[:40]}), expected a real number")
        try:
            v = float(h)
        except OverflowError as e:
            raise ValueError(f"height {i} is an integer too large for a double") from e
        if not math.isfinite(v):
            raise ValueError(f"height {i} is {v}, expected a finite number")
        if v < 0:
            raise ValueError(f"height {i} is negative ({v}); f must be non-negative")
        out.append(v)
    if not any(out):
        raise ValueError("all heights are 0: f must have a positive integral")
    return out


def _exact_entries(heights: list[float], ms: list[int]) -> tuple[list[int], int]:
    """c_m for the given m and sum_i h_i, exactly, with the heights scaled to integers by a
    common power of two 2^D (so c_m comes in units of 2^(-2D) and the sum in units of 2^(-D))."""
    ratios = [h.as_integer_ratio() for h in heights]  # denominators are powers of two
    shift = max(d for _, d in ratios).bit_length() - 1
    ints = [num << (shift - (d.bit_length() - 1)) for num, d in ratios]
    n = len(ints)
    out = []
    for m in ms:
        lo, hi = max(0, m - n + 1), min(m, n - 1)
        out.append(sum(map(operator.mul, ints[lo:hi + 1], reversed(ints[m - hi:m - lo + 1]))))
    return out, sum(ints)


def autoconvolution_ratio(heights: object) -> tuple[float, dict[str, float]]:
    """R(f) = 2n max_m c_m / (sum h)^2 for the step function with these heights (see the module
    docstring); returns the score and details (n, the peak position t in [-1/2, 1/2], ...)."""
    hs = parse_heights(heights)
    n = len(hs)
    top = max(hs)
    h = np.ldexp(np.asarray(hs, dtype=np.float64), -math.frexp(top)[1])  # max in [0.5, 1): exact
    c = np.convolve(h, h)
    cmax = float(c.max())
    band = 4.0 * (n + 1) * 2.0 ** -53  # float error of any c_m (2x: both c_m and the max move)
    near = np.flatnonzero(c >= cmax * (1.0 - band))
    if len(near) > MAX_EXACT:
        near = near[np.argsort(c[near], kind="stable")[::-1][:MAX_EXACT]]
    ms = [int(m) for m in near]
    exact, total = _exact_entries(hs, ms)
    best = max(range(len(ms)), key=exact.__getitem__)
    score = float(Fraction(2 * n * exact[best], total * total))
    peak_m = ms[best]
    details = {
        "n_steps": float(n),
        "peak_t": -0.5 + (peak_m + 1) / (2 * n),
        "near_peak_breakpoints": float(len(np.flatnonzero(c >= cmax * (1 - 1e-3)))),
    }
    return score, details


def evaluate(candidate) -> EvaluationResult:
    heights = candidate.call("step_heights", timeout=CALL_TIMEOUT, max_bytes=MAX_REPLY_BYTES)
    score, details = autoconvolution_ratio(heights)
    n = int(details["n_steps"])
    feedback = (
        f"R(f) = max (f*f) / (integral f)^2 = {score:.10f} with n = {n} steps (best known "
        f"{BEST_KNOWN}, lower is better; a constant f gives 2). The maximum of f*f is at "
        f"t = {details['peak_t']:.6f}; {int(details['near_peak_breakpoints'])} of the {2 * n - 1} "
        "breakpoints are within 0.1% of it (good functions have a flat-topped autoconvolution)."
    )
    return EvaluationResult(metrics={"combined_score": score, **details}, artifacts={"feedback": feedback})
