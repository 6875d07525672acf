"""symbolic_regression: exact answers score the noiseless limit, a fit of the true forms comes
close, invalid predictions are rejected with a reason (through the real executor), and a short
model-free run improves on the initial program."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
import support

from evoforge.problem import Problem
from evoforge.program import Status

PROB = Problem.load("symbolic_regression")
sr = support.load_evaluator(PROB)

# Knows the six formulas; picks the one (with the right number of variables) that best explains
# the training data, and predicts with it exactly: NMSE 0 on every equation.
ORACLE = '''
import math

FORMULAS = [
    (1, lambda v: math.exp(-v[0] ** 2 / 2) / math.sqrt(2 * math.pi)),
    (2, lambda v: v[0] * v[1]),
    (3, lambda v: v[0] * v[1] * v[2]),
    (2, lambda v: v[0] / v[1]),
    (2, lambda v: v[0] / (4 * math.pi * v[1] ** 2)),
    (2, lambda v: v[0] * v[1] ** 2 / 2),
]


def fit_predict(X_train, y_train, X_test):
    fits = [f for n, f in FORMULAS if n == len(X_train[0])]
    best = min(fits, key=lambda f: sum((f(x) / y - 1) ** 2 for x, y in zip(X_train, y_train)))
    return [best(x) for x in X_test]
'''

# Fits the true functional forms (power laws in log space, a Gaussian in theta) by least squares.
TRUE_FORMS = '''
import numpy as np


def fit_predict(X_train, y_train, X_test):
    X, Xt, y = np.asarray(X_train), np.asarray(X_test), np.log(np.asarray(y_train))
    designs = [(np.log(X), np.log(Xt))]
    if X.shape[1] == 1:
        designs.append((X ** 2, Xt ** 2))
    best = None
    for A, At in designs:
        A = np.column_stack([np.ones(len(A)), A])
        At = np.column_stack([np.ones(len(At)), At])
        w = np.linalg.lstsq(A, y, rcond=None)[0]
        err = float(np.mean((A @ w - y) ** 2))
        if best is None or err < best[0]:
            best = (err, np.exp(At @ w))
    return best[1].tolist()
'''


def test_scoring_functions() -> None:
    assert sr.equation_score(0.0) == pytest.approx(PROB.meta["best_known"], abs=1e-12)
    assert sr.equation_score(1.0) == 0.0 and sr.equation_score(25.0) == 0.0
    assert sr.equation_score(1e-3) == pytest.approx(-math.log10(1e-3 + 1e-5))
    y = [1.0, 2.0, 3.0, 4.0]
    assert sr.nmse(y, y) == 0.0
    assert sr.nmse(y, [2.5] * 4) == pytest.approx(1.0)  # the mean predictor
    assert sr.nmse(y, [2.0, 3.0, 4.0, 5.0]) == pytest.approx(1 / 1.25)
    assert sr.nmse(y, [1e300] * 4) == 1e300  # no overflow, still finite
    assert sr.equation_score(sr.nmse(y, [1e300] * 4)) == 0.0


def test_data_follow_the_equations() -> None:
    rng = random.Random(5)
    for i, (_, _, ranges, f) in enumerate(sr.EQUATIONS):
        xtr, ytr, xte, yte = sr.make_data(i, rng, 200, 300)
        assert len(xtr) == len(ytr) == 200 and len(xte) == len(yte) == 300
        assert all(len(x) == len(ranges) for x in xtr + xte)
        for j, (lo, hi) in enumerate(ranges):  # Latin hypercube: one point per stratum
            strata = sorted(int((x[j] - lo) / (hi - lo) * 300) for x in xte)
            assert strata == list(range(300))
        assert yte == [f(x) for x in xte]  # test targets are noiseless
        rel = [y / f(x) - 1 for x, y in zip(xtr, ytr, strict=True)]
        assert 0.005 < math.sqrt(sum(r * r for r in rel) / len(rel)) < 0.015  # 1% training noise


@pytest.mark.parametrize(("pred", "reason"), [
    ("x", "got str"),
    ([1.0, 2.0], "must return 3 predictions"),
    ([1.0, True, 2.0], "prediction 1 is bool"),
    ([1.0, [2.0], 2.0], "prediction 1 is list"),
    ([1.0, float("nan"), 2.0], "only finite"),
    ([1.0, 2.0, float("inf")], "only finite"),
])
def test_invalid_predictions_are_rejected(pred, reason) -> None:
    with pytest.raises(ValueError, match=reason):
        sr.check_predictions(pred, 3)


def test_known_solutions_through_the_executor(tmp_path: Path) -> None:
    nan = "def fit_predict(X_train, y_train, X_test):\n    return [float('nan')] * len(X_test)\n"
    short = "def fit_predict(X_train, y_train, X_test):\n    return [1.0] * (len(X_test) - 1)\n"
    text = "def fit_predict(X_train, y_train, X_test):\n    return ['1.0'] * len(X_test)\n"
    oracle, true_forms, r_nan, r_short, r_text = support.evaluate_codes(
        PROB, tmp_path, [ORACLE, TRUE_FORMS, nan, short, text])
    assert oracle.status is Status.OK, (oracle.reason, oracle.artifacts)
    assert oracle.score == pytest.approx(PROB.meta["best_known"], abs=1e-9)
    assert true_forms.status is Status.OK, (true_forms.reason, true_forms.artifacts)
    assert 4.8 < true_forms.score < PROB.meta["best_known"]
    assert "NMSE" in true_forms.artifacts["feedback"]
    assert r_nan.status is Status.FAILED and "equation 1" in r_nan.reason
    assert "prediction 0 is nan" in r_nan.reason
    assert r_short.status is Status.FAILED and "must return 1000 predictions" in r_short.reason
    assert r_text.status is Status.FAILED and "prediction 0 is str" in r_text.reason


def test_a_hanging_candidate_times_out(tmp_path: Path) -> None:
    hang = "def fit_predict(X_train, y_train, X_test):\n    while True:\n        pass\n"
    support.assert_times_out(PROB, tmp_path, hang, timeout=2)


def test_model_free_run_improves(tmp_path: Path) -> None:
    best = support.model_free_best(PROB, tmp_path, max_programs=24, seed=0)
    print("symbolic_regression model-free best:", best.score)
    # well beyond the evaluation noise (standard deviation about 0.011)
    assert best.score > PROB.meta["baseline"] * (1 + PROB.meta["baseline_tolerance"])
