"""Evaluator for online_bin_packing (hardened form): FunSearch's online bin packing, Weibull 5k.

The candidate program's fixed ``pack(sizes, capacity)`` runs the whole online packing loop in
the candidate's own process (one call per instance instead of one call per item) and calls the
evolved ``priority(item, bins)`` for every item. This evaluator then checks the returned
assignment strictly and counts the bins:

* exactly one bin index (a plain int) per item;
* online order: item t goes into a bin opened before it or into the next new bin (index = number
  of bins opened so far), so the bins are numbered 0, 1, ... in the order they were opened;
* no bin over capacity. Sizes are integers (as in FunSearch's datasets) held as doubles, so all
  remaining capacities are exact: zero tolerance;
* spot checks: at SPOT_CHECKS random steps per instance (chosen with ``secrets``), the evaluator
  rebuilds the state the packing had, asks ``priority(item, bins)`` itself and checks that the
  assignment followed it. A packing that looked ahead (e.g. ``priority`` reading the caller's
  frame) or otherwise did not follow ``priority`` fails these checks with high probability.

Score: the excess of the bins used over the L1 lower bound ceil(sum(sizes) / capacity), in
percent, averaged over the instances (lower is better).

Instances are FIXED so that runs are comparable (FunSearch used a fixed dataset too): instance k
(k = 0..4) has 5,000 item sizes drawn with ``random.Random(k).weibullvariate(45, 3)`` (scale 45,
shape 3), clipped to [1, 100] and rounded to the nearest integer; capacity 100.
"""

from __future__ import annotations

import math
import random
import secrets

from evoforge.evaluation_result import EvaluationResult

CAPACITY = 100
NUM_ITEMS = 5_000
SEEDS = (0, 1, 2, 3, 4)
SPOT_CHECKS = 12  # priority() re-asked at this many random steps per instance
PACK_TIMEOUT = 10.0  # seconds for one pack() call (one instance)
PRIORITY_TIMEOUT = 5.0  # seconds for one re-asked priority() call
BEST_KNOWN = 0.68  # FunSearch (Romera-Paredes et al., Nature 2024), on its Weibull 5k dataset
BEST_FIT_FUNSEARCH = 3.98  # best fit on FunSearch's Weibull 5k dataset


def weibull_instance(seed: int, num_items: int = NUM_ITEMS) -> list[float]:
    """The item sizes of one instance: Weibull(scale 45, shape 3), clipped to [1, 100], rounded."""
    rng = random.Random(seed)
    return [float(round(min(100.0, max(1.0, rng.weibullvariate(45.0, 3.0))))) for _ in range(num_items)]


def l1_bound(sizes: list[float], capacity: int) -> int:
    """ceil(sum(sizes) / capacity), exact (the sizes are integers)."""
    total = sum(int(s) for s in sizes)
    return -(-total // capacity)


def check_assignment(sizes: list[float], capacity: int, assignment: object) -> int:
    """Verify an online assignment strictly; return the number of bins used. Raises ValueError
    naming the first problem: wrong type or length, a bin index that skips ahead (not online) or
    is negative, or a bin over capacity."""
    if type(assignment) is not list:
        raise ValueError(f"pack() must return a list of bin indices, got {type(assignment).__name__}")
    if len(assignment) != len(sizes):
        raise ValueError(f"pack() returned {len(assignment)} bin indices for {len(sizes)} items; "
                         "every item must be assigned exactly once")
    remaining: list[float] = []
    for t, (item, b) in enumerate(zip(sizes, assignment, strict=True)):
        if type(b) is not int:
            raise ValueError(f"the bin index of item {t} is {type(b).__name__} ({str(b)[:40]}), "
                             "expected an int")
        if b < 0 or b > len(remaining):
            raise ValueError(f"item {t} was put into bin {b}, but only bins 0..{len(remaining) - 1} "
                             f"were open and the next new bin is {len(remaining)}: bins must be "
                             "numbered in the order they are opened (online packing)")
        if b == len(remaining):
            remaining.append(float(capacity))
        if remaining[b] < item:
            raise ValueError(f"item {t} (size {item:g}) does not fit into bin {b} "
                             f"(remaining capacity {remaining[b]:g}): the bin is over capacity")
        remaining[b] -= item
    return len(remaining)


def _parse_scores(scores: object, count: int, t: int) -> list[float]:
    if type(scores) is not list or len(scores) != count:
        got = len(scores) if type(scores) is list else type(scores).__name__
        raise ValueError(f"priority() at item {t} must return a list of {count} scores, got {got}")
    for s in scores:
        if type(s) is not int and type(s) is not float:
            raise ValueError(f"priority() at item {t} returned a {type(s).__name__} score")
    return scores


def spot_check(candidate, sizes: list[float], capacity: int, assignment: list[int],
               steps: list[int]) -> None:
    """Re-ask ``priority`` at the given steps (the state is rebuilt from the checked assignment)
    and verify the packing put each item where ``priority`` ranks first (first on ties)."""
    todo = set(steps)
    remaining: list[float] = []
    for t, (item, b) in enumerate(zip(sizes, assignment, strict=True)):
        if t in todo:
            fits = [i for i, r in enumerate(remaining) if r >= item]
            options = [remaining[i] for i in fits] + [float(capacity)]
            scores = _parse_scores(candidate.call("priority", item, options, timeout=PRIORITY_TIMEOUT),
                                   len(options), t)
            best = max(range(len(scores)), key=scores.__getitem__)
            expected = fits[best] if best < len(fits) else len(remaining)
            if expected != b:
                raise ValueError(
                    f"at item {t} the packing used bin {b}, but priority() asked again in the same "
                    f"state ranks bin {expected} first: priority must be a deterministic function of "
                    "(item, bins) alone and pack() must not be changed")
        if b == len(remaining):
            remaining.append(float(capacity))
        remaining[b] -= item


def evaluate(candidate) -> EvaluationResult:
    pick = secrets.SystemRandom()
    excesses: list[float] = []
    bins_total = l1_total = 0
    for seed in SEEDS:
        sizes = weibull_instance(seed)
        assignment = candidate.call("pack", sizes, CAPACITY, timeout=PACK_TIMEOUT, max_bytes=1 << 20)
        used = check_assignment(sizes, CAPACITY, assignment)
        spot_check(candidate, sizes, CAPACITY, assignment, pick.sample(range(len(sizes)), SPOT_CHECKS))
        lb = l1_bound(sizes, CAPACITY)
        excesses.append(100.0 * (used - lb) / lb)
        bins_total += used
        l1_total += lb
    score = math.fsum(excesses) / len(excesses)
    per = ", ".join(f"{e:.3f}%" for e in excesses)
    feedback = (f"{bins_total} bins over {len(SEEDS)} instances (L1 lower bound {l1_total}); excess "
                f"over L1 per instance: {per}; mean {score:.4f}% (lower is better; FunSearch reached "
                f"{BEST_KNOWN}% and best fit {BEST_FIT_FUNSEARCH}% on FunSearch's own instances).")
    metrics = {"combined_score": score, "bins_used": float(bins_total), "l1_bound": float(l1_total)}
    metrics.update({f"excess_instance_{k}": e for k, e in enumerate(excesses)})
    return EvaluationResult(metrics=metrics, artifacts={"feedback": feedback})
