"""The same checks as hardened_evaluator.py in the plain form: the candidate is imported into
this process, so it can patch the clock, the checker and comparisons (what the hardened form
prevents; tests/test_hostile.py shows both)."""

import importlib.util
import random
import secrets
import time


def evaluate(program_path):
    spec = importlib.util.spec_from_file_location("candidate", program_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rng = random.Random(secrets.randbits(64))
    for i in range(3):
        xs = [rng.randint(-10**6, 10**6) for _ in range(rng.randint(5, 30))]
        t0 = time.perf_counter()
        got = module.solve(xs)
        elapsed = time.perf_counter() - t0
        if i > 0 and elapsed > 1.0:
            raise ValueError(f"too slow: {elapsed:.2f} s")
        if got != sorted(xs):
            raise ValueError("wrong answer")
    return {"combined_score": 0.25}
