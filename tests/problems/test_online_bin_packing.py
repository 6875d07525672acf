"""online_bin_packing: the instances and the strict assignment check on known packings; invalid,
offline and inconsistent packings rejected through the real executor; a short model-free run
that improves on the initial program (first fit)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import support

from evoforge.problem import Problem
from evoforge.program import Status

PROB = Problem.load("online_bin_packing")
EV = support.load_evaluator(PROB)


def with_code(extra: str) -> str:
    """The initial program with ``extra`` appended (later definitions replace earlier ones)."""
    return PROB.initial_code + "\n\n" + extra.strip() + "\n"


def best_fit(sizes: list[float], capacity: int) -> list[int]:
    """Best fit written independently of the problem's files."""
    remaining: list[float] = []
    out = []
    for item in sizes:
        best = None
        for b, r in enumerate(remaining):
            if r >= item and (best is None or r < remaining[best]):
                best = b
        if best is None:
            remaining.append(float(capacity))
            best = len(remaining) - 1
        remaining[best] -= item
        out.append(best)
    return out


def test_instances_are_fixed_weibull_integers() -> None:
    a, b = EV.weibull_instance(0), EV.weibull_instance(0)
    assert a == b and a != EV.weibull_instance(1)
    assert len(a) == EV.NUM_ITEMS == 5000
    assert all(type(s) is float and s == int(s) and 1 <= s <= 100 for s in a)
    mean = sum(a) / len(a)  # Weibull(scale 45, shape 3) has mean 45 * Gamma(4/3) = 40.19
    assert abs(mean - 45 * math.gamma(4 / 3)) < 1.0
    assert EV.l1_bound([60.0, 50.0, 40.0, 50.0], 100) == 2
    assert EV.l1_bound([60.0, 50.0, 40.0, 51.0], 100) == 3


def test_known_packings_are_counted() -> None:
    sizes = [60.0, 50.0, 40.0, 50.0]
    assert EV.check_assignment(sizes, 100, [0, 1, 0, 1]) == 2  # first fit
    assert EV.check_assignment(sizes, 100, [0, 1, 2, 3]) == 4  # a bin per item
    total = 0
    for seed in EV.SEEDS:
        s = EV.weibull_instance(seed)
        used = EV.check_assignment(s, 100, best_fit(s, 100))
        assert used >= EV.l1_bound(s, 100)
        total += 100 * (used - EV.l1_bound(s, 100)) / EV.l1_bound(s, 100)
    # best fit on these instances, as stated in the README
    assert math.isclose(total / len(EV.SEEDS), 4.084702698568276, rel_tol=1e-12)


@pytest.mark.parametrize(
    ("assignment", "reason"),
    [
        pytest.param([0, 0, 1, 1], "over capacity", id="overfull"),
        pytest.param([0, 2, 1, 1], "order they are opened", id="skips-a-bin"),
        pytest.param([0, -1, 1, 1], "order they are opened", id="negative"),
        pytest.param([0, 1, 0], "exactly once", id="too-short"),
        pytest.param([0, 1, 0, 1, 2], "exactly once", id="too-long"),
        pytest.param([0, 1, 0.0, 1], "expected an int", id="float-index"),
        pytest.param([0, 1, False, 1], "bool", id="bool-index"),
        pytest.param("0101", "list of bin indices", id="string"),
    ],
)
def test_invalid_assignments_are_rejected(assignment: object, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        EV.check_assignment([60.0, 50.0, 40.0, 50.0], 100, assignment)


BEST_FIT = "def priority(item, bins):\n    return [-(b - item) for b in bins]"

LOOKAHEAD = """
import sys

_PLAN = {}


def _first_fit_decreasing(sizes, capacity):
    order = sorted(range(len(sizes)), key=lambda i: -sizes[i])
    remaining, bin_of = [], [0] * len(sizes)
    for i in order:
        for b, r in enumerate(remaining):
            if r >= sizes[i]:
                remaining[b] -= sizes[i]
                bin_of[i] = b
                break
        else:
            remaining.append(capacity - sizes[i])
            bin_of[i] = len(remaining) - 1
    renumber = {}
    return [renumber.setdefault(b, len(renumber)) for b in bin_of]


def priority(item, bins):
    caller = sys._getframe(1).f_locals  # peek at pack()'s locals: all items, future ones too
    if "sizes" not in caller:
        return [0.0] * len(bins)
    key = id(caller["sizes"])
    if key not in _PLAN:
        _PLAN[key] = _first_fit_decreasing(caller["sizes"], caller["capacity"])
    target = _PLAN[key][len(caller["assignment"])]
    scores = [1.0 if b == target else 0.0 for b in caller["fits"]]
    return scores + [1.0 if target == len(caller["remaining"]) else 0.0]
"""


def test_through_the_executor(tmp_path: Path) -> None:
    codes = [
        PROB.initial_code,
        with_code(BEST_FIT),
        with_code(LOOKAHEAD),  # offline (first fit decreasing) through a peeking priority
        with_code("import random\n\ndef priority(item, bins):\n    return [random.random() for b in bins]"),
        with_code("def priority(item, bins):\n    return [float('nan')] * len(bins)"),
        with_code("def priority(item, bins):\n    return [1.0]"),
        with_code("def pack(sizes, capacity):\n    return [0] * len(sizes)"),
        with_code("def pack(sizes, capacity):\n    return list(range(1, len(sizes) + 1))"),
        with_code("def pack(sizes, capacity):\n    return list(range(len(sizes) - 1))"),
        with_code("def pack(sizes, capacity):\n    return [float(i) for i in range(len(sizes))]"),
    ]
    first_fit, bf, *bad = support.evaluate_codes(PROB, tmp_path, codes, concurrent=True)
    assert first_fit.status is Status.OK, (first_fit.reason, first_fit.artifacts)
    assert first_fit.score == PROB.meta["baseline"]
    assert "bins over 5 instances" in first_fit.artifacts["feedback"]
    assert bf.status is Status.OK and bf.score == 4.084702698568276
    assert bf.metrics["bins_used"] < first_fit.metrics["bins_used"]
    assert bf.metrics["l1_bound"] == first_fit.metrics["l1_bound"]
    reasons = ("priority() asked again", "priority() asked again", "non-finite", "scores for",
               "over capacity", "order they are opened", "exactly once", "expected an int")
    for r, reason in zip(bad, reasons, strict=True):
        assert r.status is Status.FAILED and reason in r.reason, (r.status, r.reason)


def test_a_hanging_candidate_times_out(tmp_path: Path) -> None:
    code = with_code("def priority(item, bins):\n    while True:\n        pass")
    support.assert_times_out(PROB, tmp_path, code, timeout=3)


def test_a_short_model_free_run_improves(tmp_path: Path) -> None:
    best = support.model_free_best(PROB, tmp_path, max_programs=4, seed=0)
    assert best.score < PROB.meta["baseline"], best.score
