"""Total weighted tardiness of a dispatching rule on 6 fixed single-machine instances.

Each instance has 30 jobs (processing time 1..10, weight 1..10, due dates from the classic
tardiness-factor / due-date-range generator, T = 0.6, R = 0.4), generated from fixed seeds.
combined_score = -mean over instances of (rule's total weighted tardiness / WSPT's): -1.0 for the
initial program (which is WSPT), higher is better, 0 would mean no job is late anywhere.
"""

import math
import random

N_JOBS = 30
# (seed, tardiness factor T, due-date range R): loose to tight, narrow to wide due dates
SETTINGS = ((101, 0.2, 0.6), (102, 0.4, 0.2), (103, 0.4, 1.0), (104, 0.6, 0.4),
            (105, 0.6, 0.8), (106, 0.8, 0.2), (107, 0.8, 0.6), (108, 0.3, 0.3))


def _instance(seed, tf, rdd):
    rng = random.Random(seed)
    p = [rng.randint(1, 10) for _ in range(N_JOBS)]
    w = [rng.randint(1, 10) for _ in range(N_JOBS)]
    total = sum(p)
    lo, hi = total * (1 - tf - rdd / 2), total * (1 - tf + rdd / 2)
    d = [rng.uniform(lo, hi) for _ in range(N_JOBS)]
    return list(zip(w, p, d, strict=True))


INSTANCES = [_instance(*s) for s in SETTINGS]


def _load(program_path):
    ns = {"__name__": "candidate"}
    with open(program_path) as f:
        exec(compile(f.read(), program_path, "exec"), ns)
    return ns


def weighted_tardiness(jobs, priority):
    pbar = sum(p for _, p, _ in jobs) / len(jobs)
    waiting = list(range(len(jobs)))
    t = 0.0
    cost = 0.0
    while waiting:
        best, best_k = None, 0
        for k, j in enumerate(waiting):
            w, p, d = jobs[j]
            v = priority(w, p, d, t, pbar)
            if best is None or v > best:
                best, best_k = v, k
        w, p, d = jobs[waiting.pop(best_k)]
        t += p
        cost += w * max(t - d, 0.0)
    return cost


def _wspt(w, p, d, t, pbar):
    return w / p


REFERENCE = [weighted_tardiness(jobs, _wspt) for jobs in INSTANCES]


def evaluate(program_path):
    priority = _load(program_path)["priority"]
    ratios = []
    for jobs, ref in zip(INSTANCES, REFERENCE, strict=True):
        cost = weighted_tardiness(jobs, priority)
        if not math.isfinite(cost):
            raise ValueError("the rule produced a non-finite schedule cost")
        ratios.append(cost / ref)
    return {"combined_score": -sum(ratios) / len(ratios),
            "worst_ratio": max(ratios)}
