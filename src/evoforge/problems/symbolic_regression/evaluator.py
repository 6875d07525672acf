"""Evaluator for symbolic_regression: recover six AI Feynman equations from noisy samples.

For each equation the evaluator draws fresh random inputs over the AI Feynman ranges (a Latin
hypercube sample: each variable's range is cut into n equal strata, one point in each, which keeps
the score's variance small), computes the targets, adds 1% multiplicative Gaussian noise to the
training targets only, and calls the candidate's ``fit_predict(X_train, y_train, X_test)`` once.
The equation's identity is hidden: the candidate sees only the numbers (and so the number of
variables). Predictions are scored against the noiseless test targets:

    NMSE_e  = mean((y - yhat)^2) / var(y)          (population variance of the test targets)
    score_e = max(0, -log10(NMSE_e + 1e-5))        (0 = no better than the mean, 5 = exact)
    combined_score = mean of score_e over the equations (higher is better, at most 5)
"""

from __future__ import annotations

import math
import random
import secrets
from collections.abc import Callable
from typing import Any

from evoforge.evaluation_result import EvaluationResult

N_TRAIN = 1000
N_TEST = 1000
NOISE = 0.01  # relative standard deviation of the multiplicative training noise
NMSE_FLOOR = 1e-5
CALL_TIMEOUT = 10.0


def _gauss(v: list[float]) -> float:
    return math.exp(-v[0] ** 2 / 2) / math.sqrt(2 * math.pi)


# (AI Feynman id, formula, variable ranges, function)
EQUATIONS: list[tuple[str, str, list[tuple[float, float]], Callable[[list[float]], float]]] = [
    ("I.6.2a", "f = exp(-theta**2/2)/sqrt(2*pi)", [(1.0, 3.0)], _gauss),
    ("I.12.1", "F = mu*Nn", [(1.0, 5.0)] * 2, lambda v: v[0] * v[1]),
    ("I.14.3", "U = m*g*z", [(1.0, 5.0)] * 3, lambda v: v[0] * v[1] * v[2]),
    ("I.25.13", "Ve = q/C", [(1.0, 5.0)] * 2, lambda v: v[0] / v[1]),
    ("II.3.24", "h = Pwr/(4*pi*r**2)", [(1.0, 5.0)] * 2, lambda v: v[0] / (4 * math.pi * v[1] ** 2)),
    ("II.8.31", "E_den = epsilon*Ef**2/2", [(1.0, 5.0)] * 2, lambda v: v[0] * v[1] ** 2 / 2),
]


def make_data(eq: int, rng: random.Random, n_train: int = N_TRAIN, n_test: int = N_TEST
              ) -> tuple[list[list[float]], list[float], list[list[float]], list[float]]:
    """(X_train, noisy y_train, X_test, noiseless y_test) for equation ``eq``."""
    _, _, ranges, f = EQUATIONS[eq]

    def draw(n: int) -> list[list[float]]:  # Latin hypercube: one point per stratum per variable
        cols = []
        for lo, hi in ranges:
            col = [lo + (hi - lo) * (k + rng.random()) / n for k in range(n)]
            rng.shuffle(col)
            cols.append(col)
        return [list(row) for row in zip(*cols, strict=True)]

    x_train, x_test = draw(n_train), draw(n_test)
    y_train = [f(x) * (1.0 + NOISE * rng.gauss(0.0, 1.0)) for x in x_train]
    return x_train, y_train, x_test, [f(x) for x in x_test]


def check_predictions(pred: Any, n: int) -> list[float]:
    """A list of ``n`` finite real numbers, or ValueError naming what is wrong."""
    if type(pred) is not list:
        raise ValueError(f"must return a list of {n} numbers, got {type(pred).__name__}")
    if len(pred) != n:
        raise ValueError(f"must return {n} predictions (one per test point), got {len(pred)}")
    out = []
    for i, v in enumerate(pred):
        if type(v) is not float and type(v) is not int:
            raise ValueError(f"prediction {i} is {type(v).__name__}, expected a real number")
        v = float(v)
        if not math.isfinite(v):
            raise ValueError(f"prediction {i} is {v}; only finite numbers are accepted")
        out.append(v)
    return out


def nmse(y: list[float], yhat: list[float]) -> float:
    mean = math.fsum(y) / len(y)
    var = math.fsum((v - mean) ** 2 for v in y) / len(y)
    err = math.fsum((a - b) * (a - b) for a, b in zip(y, yhat, strict=True)) / len(y) / var
    return min(err, 1e300)  # huge predictions: a finite, hopeless NMSE


def equation_score(err: float) -> float:
    return max(0.0, -math.log10(err + NMSE_FLOOR))


def evaluate(candidate) -> EvaluationResult:
    rng = random.Random(secrets.randbits(64))
    metrics: dict[str, float] = {}
    lines = []
    scores = []
    for i, (name, _formula, ranges, _f) in enumerate(EQUATIONS):
        x_train, y_train, x_test, y_test = make_data(i, rng)
        raw = candidate.call("fit_predict", x_train, y_train, x_test, timeout=CALL_TIMEOUT,
                             allow_nan=True, max_bytes=1 << 20)
        try:
            pred = check_predictions(raw, len(x_test))
        except ValueError as e:
            raise ValueError(f"fit_predict for equation {i + 1} ({len(ranges)} variables): {e}") from None
        err = nmse(y_test, pred)
        s = equation_score(err)
        scores.append(s)
        metrics[f"nmse_{i + 1}"] = err
        lines.append(f"equation {i + 1} ({len(ranges)} variable{'s' * (len(ranges) > 1)}): "
                     f"NMSE {err:.3e}, score {s:.3f}  [{name}]")
    metrics["combined_score"] = math.fsum(scores) / len(scores)
    metrics["mean_nmse"] = math.fsum(metrics[f"nmse_{i + 1}"] for i in range(len(EQUATIONS))) / len(EQUATIONS)
    return EvaluationResult(metrics=metrics, artifacts={"feedback": "\n".join(lines)})
