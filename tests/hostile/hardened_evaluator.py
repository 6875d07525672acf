"""Hardened-form evaluator for the hostile suite: fresh unpredictable inputs, strict checks of
plain JSON values, and timing by the evaluator's own clock (calls after the first must be fast)."""

import random
import secrets


def evaluate(candidate):
    rng = random.Random(secrets.randbits(64))
    for i in range(3):
        xs = [rng.randint(-10**6, 10**6) for _ in range(rng.randint(5, 30))]
        got = candidate.call("solve", xs, timeout=30, max_bytes=1_000_000)
        if i > 0 and candidate.last_elapsed > 1.0:
            raise ValueError(f"too slow: {candidate.last_elapsed:.2f} s")
        if type(got) is not list or got != sorted(xs):
            raise ValueError("wrong answer")
    return {"combined_score": 0.25}
