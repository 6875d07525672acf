"""moe_expert_cache: the simulator's references (LRU = 1, Belady, the upper bound), causality of what
the policy sees, invalid plans rejected with a reason (through the real executor), and a short
model-free run improving on the initial program."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import support

from evoforge.problem import Problem
from evoforge.program import Status

PROB = Problem.load("moe_expert_cache")
moe = support.load_evaluator(PROB)

TRACES = [moe.make_trace(s) for s in moe.TRACE_SEEDS]

LRU = '''
def plan(obs):
    L, E = obs["layers"], obs["experts"]
    return {"priority": [[0.0] * E for _ in range(L)], "distance_bonus": [0] * L,
            "reuse_bonus": 0, "prefetch": []}
'''


def bad_plan(field: str) -> str:
    return LRU.replace("    return {", "    p = {").replace(
        '"prefetch": []}', f'"prefetch": []}}\n    {field}\n    return p')


def test_reference_values() -> None:
    ref = moe.reference_times(TRACES)
    assert ref["lru"] / ref["belady"] == moe.BELADY_RATIO
    assert ref["lru"] / ref["bound"] == moe.UPPER_BOUND
    assert moe.BELADY_RATIO == pytest.approx(PROB.meta["best_known"], abs=1e-7)
    assert 1.0 < moe.BELADY_RATIO < moe.UPPER_BOUND
    for tr in TRACES:  # MIN on the plain sequence <= Belady in the simulator <= LRU
        lru = moe.simulate(tr, moe.constant_plan)
        bel = moe.simulate(tr, moe.constant_plan, belady=True)
        assert moe.min_fetches(tr) <= bel["transfers"] < lru["transfers"]
        assert bel["time"] < lru["time"]


def test_simulator_invariants() -> None:
    tr = moe.make_trace(5, tokens=40)
    distinct = {(ly, e) for tok in tr["routing"] for ly in range(moe.LAYERS) for e in tok[ly]}
    big = moe.simulate(tr, moe.constant_plan, capacity=moe.LAYERS * moe.EXPERTS)
    assert big["transfers"] == len(distinct)  # no evictions: every expert fetched once
    r = moe.simulate(tr, moe.constant_plan)
    compute = 40 * moe.LAYERS * moe.COMPUTE_TIME
    assert r["time"] == pytest.approx(compute + r["stall"])
    assert r["time"] >= r["transfers"] * moe.TRANSFER_TIME  # one link, one expert at a time
    for tok in tr["routing"]:
        assert all(len(set(x)) == moe.TOP_K and x == sorted(x) for x in tok)
    assert all(math.isclose(sum(g), 1.0, abs_tol=1e-2) for tok in tr["gates"] for g in tok)


def test_the_policy_sees_only_the_past() -> None:
    tr = moe.make_trace(9, tokens=12)
    seen = []

    def plan_for(t: int, obs: dict) -> moe.Plan:
        seen.append(obs)
        return moe.ZERO_PLAN

    moe.simulate(tr, plan_for)
    assert [o["token"] for o in seen] == list(range(12))
    assert seen[0]["prev_routing"] is None and seen[0]["resident"] == []
    for t in range(1, 12):
        assert seen[t]["prev_routing"] == tr["routing"][t - 1]
        assert seen[t]["prev_gates"] == tr["gates"][t - 1]
        assert set(seen[t]) == {"token", "prev_routing", "prev_gates", "resident"}


def test_speculation_and_priorities_change_the_outcome() -> None:
    tr = TRACES[0]
    zeros = [[0.0] * moe.EXPERTS for _ in range(moe.LAYERS)]
    base = moe.simulate(tr, moe.constant_plan)
    # equal values: a speculative prefetch never evicts (it is not worth more than its victim),
    # so it only fills free slots at the start
    spec_equal = (zeros, [0.0] * moe.LAYERS, 0.0, [(ly, e) for ly in range(moe.LAYERS) for e in range(4)])
    r = moe.simulate(tr, lambda t, o: spec_equal)
    assert 0 < r["speculative"] <= moe.CAPACITY
    # layer-0 experts valued above everything else: speculation evicts for them
    layer0 = [[5.0 if ly == 0 else 0.0] * moe.EXPERTS for ly in range(moe.LAYERS)]
    spec_hi = (layer0, [0.0] * moe.LAYERS, 0.0, [(0, e) for e in range(moe.EXPERTS)])
    r = moe.simulate(tr, lambda t, o: spec_hi)
    assert r["speculative"] > 0 and r["demand_misses"] < base["demand_misses"]
    # with equal priorities the reuse bonus only favours what LRU keeps anyway
    keep_used = (zeros, [0.0] * moe.LAYERS, 1.0, [])
    assert moe.simulate(tr, lambda t, o: keep_used) == base
    # a distance bonus that keeps far layers changes what is evicted
    far = (zeros, [0.1 * d for d in range(moe.LAYERS)], 0.0, [])
    assert moe.simulate(tr, lambda t, o: far)["transfers"] != base["transfers"]


@pytest.mark.parametrize(("raw", "reason"), [
    ([], "exactly the keys"),
    ({"priority": [], "distance_bonus": [], "reuse_bonus": 0}, "exactly the keys"),
    ({"priority": [[0.0] * 16] * 11, "distance_bonus": [0.0] * 12, "reuse_bonus": 0,
      "prefetch": []}, "list of 12 rows"),
    ({"priority": [[0.0] * 15] * 12, "distance_bonus": [0.0] * 12, "reuse_bonus": 0,
      "prefetch": []}, "'priority' row 0 must be a list of 16"),
    ({"priority": [[0.0] * 16] * 12, "distance_bonus": [0.0] * 12, "reuse_bonus": True,
      "prefetch": []}, "holds a bool"),
    ({"priority": [[float("nan")] * 16] * 12, "distance_bonus": [0.0] * 12, "reuse_bonus": 0,
      "prefetch": []}, "only finite"),
    ({"priority": [[0.0] * 16] * 12, "distance_bonus": [0.0] * 12, "reuse_bonus": 0,
      "prefetch": [[12, 0]]}, "item 0 must be"),
    ({"priority": [[0.0] * 16] * 12, "distance_bonus": [0.0] * 12, "reuse_bonus": 0,
      "prefetch": [[0, 1.0]]}, "item 0 must be"),
    ({"priority": [[0.0] * 16] * 12, "distance_bonus": [0.0] * 12, "reuse_bonus": 0,
      "prefetch": [[0, 1]] * 65}, "at most 64"),
])
def test_invalid_plans_are_rejected(raw, reason) -> None:
    with pytest.raises(ValueError, match=reason):
        moe.check_plan(raw)


def test_through_the_executor(tmp_path: Path) -> None:
    nan = bad_plan('p["priority"][3][5] = float("nan")')
    missing = bad_plan('del p["reuse_bonus"]')
    wrong = bad_plan('p["prefetch"] = [[0, 99]] if obs["token"] == 7 else []')
    lru, initial, r_nan, r_missing, r_wrong = support.evaluate_codes(
        PROB, tmp_path, [LRU, PROB.initial_code, nan, missing, wrong])
    assert lru.status is Status.OK, (lru.reason, lru.artifacts)
    assert lru.score == 1.0
    assert "Belady" in lru.artifacts["feedback"]
    assert initial.status is Status.OK and initial.score == PROB.meta["baseline"]
    assert r_nan.status is Status.FAILED and "token 0" in r_nan.reason and "only finite" in r_nan.reason
    assert r_missing.status is Status.FAILED and "exactly the keys" in r_missing.reason
    assert r_wrong.status is Status.FAILED and "token 7" in r_wrong.reason


def test_a_hanging_policy_times_out(tmp_path: Path) -> None:
    hang = "def plan(obs):\n    while True:\n        pass\n"
    r = support.assert_times_out(PROB, tmp_path, hang)
    assert "did not return within 2 s" in r.reason, r.reason


def test_model_free_run_improves(tmp_path: Path) -> None:
    best = support.model_free_best(PROB, tmp_path, max_programs=10, seed=0)
    print("moe_expert_cache model-free best:", best.score)
    assert best.score > PROB.meta["baseline"] + 1e-6
