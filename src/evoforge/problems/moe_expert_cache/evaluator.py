"""Evaluator for moe_expert_cache: expert caching and prefetching for Pre-gated MoE inference.

A trusted, trace-driven simulator (stdlib only). The candidate never runs the simulation: it is
called once per token, before the token starts, with what is causally known then (the previous
token's routing and gate scores, the cache contents), and returns a plan for that token
(retention priorities, a bonus per layer distance, a bonus for experts the token has
already used, speculative prefetches). Within the token the
simulator executes the plan together with the Pre-gated MoE mechanism itself (at layer l the
experts of layer l + 1 are known and fetched), so the candidate cannot use information from the
future, and decisions inside a token never wait for a call over the channel.

Model (time unit: the compute time of one MoE layer for one token):
- L layers, E experts per layer, top-k routing; a GPU cache of C expert slots shared by all layers.
- One PCIe link moves one expert at a time, TRANSFER_TIME per expert, first come first served,
  never preempted. A slot is taken (and its victim evicted) when a transfer is issued.
- Layer l of a token: fetch its missing experts (demand), then the missing pre-gated experts of
  layer l + 1; layer l computes for COMPUTE_TIME once its k experts have arrived. While it
  computes, if the link goes idle before the compute ends, the simulator issues the plan's
  speculative prefetches (in order) one after another, as long as the link is idle before the
  end of the compute (a transfer may run past it and delay later fetches).
- Eviction: among arrived experts not needed by the current or the next layer, evict the one
  with the lowest priority[l'][e] + distance_bonus[(l' - l) % L] (+ reuse_bonus if the current
  token already used it; l = current layer), ties broken least-recently-used. A speculative
  prefetch is skipped unless its own value is higher than the victim's.
Score: the simulated time of LRU (same mechanism, constant priorities, no speculation) divided by
the candidate's time, over three fixed traces: throughput relative to LRU (higher is better).
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Callable
from typing import Any

from evoforge.evaluation_result import EvaluationResult

LAYERS = 12
EXPERTS = 16
TOP_K = 2
CAPACITY = 48
COMPUTE_TIME = 1.0
TRANSFER_TIME = 4.0
TOKENS = 300
TRACE_SEEDS = (11, 22, 33)  # fixed traces, for comparable and reproducible scores
MAX_PREFETCH = 64
CALL_TIMEOUT = 2.0
TOPICS = 4
# reference_times() on the fixed traces (checked by the tests): LRU time / Belady's time, and
# LRU time / the lower bound on any policy's time.
BELADY_RATIO = 1.3478053181890557
UPPER_BOUND = 2.3512962962962964
SETUP = {"layers": LAYERS, "experts": EXPERTS, "k": TOP_K, "capacity": CAPACITY,
         "tokens": TOKENS, "compute_time": COMPUTE_TIME, "transfer_time": TRANSFER_TIME}


# -- traces -----------------------------------------------------------------------------------


def make_trace(seed: int, tokens: int = TOKENS) -> dict[str, list]:
    """A seeded routing trace: routing[t][l] = sorted top-k experts, gates[t][l] = softmax scores.

    Logits per (token, layer, expert): a per-layer popularity, a per-topic preference (the topic
    switches with probability 0.04 per token: bursts), +1.5 for the experts the previous token
    used at that layer (temporal reuse), +1.5 for the two experts that the expert chosen first at
    layer l - 1 favours (cross-layer correlation), and Gumbel noise."""
    rng = random.Random(seed)
    L, E = LAYERS, EXPERTS
    pop = [[rng.gauss(0.0, 1.0) for _ in range(E)] for _ in range(L)]
    pref = [[[rng.gauss(0.0, 1.5) for _ in range(E)] for _ in range(L)] for _ in range(TOPICS)]
    aff = [[rng.sample(range(E), 2) for _ in range(E)] for _ in range(L)]
    topic = rng.randrange(TOPICS)
    routing: list[list[list[int]]] = []
    gates: list[list[list[float]]] = []
    prev: list[list[int]] = [[] for _ in range(L)]
    for _ in range(tokens):
        if rng.random() < 0.04:
            topic = rng.randrange(TOPICS)
        tok_r, tok_g = [], []
        above: list[int] = []
        for ly in range(L):
            z = [pop[ly][e] + pref[topic][ly][e] for e in range(E)]
            for e in prev[ly]:
                z[e] += 1.5
            if above:
                for e in aff[ly][above[0]]:
                    z[e] += 1.5
            z = [v - math.log(-math.log(rng.random() or 1e-300)) for v in z]
            m = max(z)
            w = [math.exp(v - m) for v in z]
            s = sum(w)
            tok_g.append([round(v / s, 4) for v in w])
            chosen = sorted(range(E), key=lambda e: -z[e])[:TOP_K]
            tok_r.append(sorted(chosen))
            above = chosen
        routing.append(tok_r)
        gates.append(tok_g)
        prev = tok_r
    return {"routing": routing, "gates": gates}


# -- the simulator ----------------------------------------------------------------------------

Plan = tuple[list[list[float]], list[float], float, list[tuple[int, int]]]
Key = tuple[int, int]


def check_plan(raw: Any) -> Plan:
    """Validate a plan: {"priority": L x E numbers, "distance_bonus": L numbers, "reuse_bonus":
    a number, "prefetch": at most MAX_PREFETCH [layer, expert] pairs}. ValueError names the problem."""
    if type(raw) is not dict or set(raw) != set(PLAN_KEYS):
        got = sorted(raw) if type(raw) is dict else type(raw).__name__
        raise ValueError(f"must return a dict with exactly the keys {list(PLAN_KEYS)}; got {got}")
    pr = raw["priority"]
    if type(pr) is not list or len(pr) != LAYERS:
        raise ValueError(f"'priority' must be a list of {LAYERS} rows (one per layer)")
    prio = [_numbers(row, EXPERTS, f"'priority' row {ly}") for ly, row in enumerate(pr)]
    bonus = _numbers(raw["distance_bonus"], LAYERS, "'distance_bonus'")
    reuse = _numbers([raw["reuse_bonus"]], 1, "'reuse_bonus'")[0]
    pf = raw["prefetch"]
    if type(pf) is not list or len(pf) > MAX_PREFETCH:
        raise ValueError(f"'prefetch' must be a list of at most {MAX_PREFETCH} [layer, expert] pairs")
    items: list[Key] = []
    for i, it in enumerate(pf):
        if (type(it) is not list or len(it) != 2 or type(it[0]) is not int or type(it[1]) is not int
                or not 0 <= it[0] < LAYERS or not 0 <= it[1] < EXPERTS):
            raise ValueError(f"'prefetch' item {i} must be [layer, expert] with 0 <= layer < "
                             f"{LAYERS} and 0 <= expert < {EXPERTS}, got {str(it)[:40]}")
        items.append((it[0], it[1]))
    return prio, bonus, reuse, items


def _numbers(v: Any, n: int, what: str) -> list[float]:
    if type(v) is not list or len(v) != n:
        raise ValueError(f"{what} must be a list of {n} numbers")
    out = []
    for x in v:
        if type(x) is not float and type(x) is not int:
            raise ValueError(f"{what} holds a {type(x).__name__}; only real numbers are accepted")
        x = float(x)
        if not math.isfinite(x):
            raise ValueError(f"{what} holds {x}; only finite numbers are accepted")
        out.append(x)
    return out


PLAN_KEYS = ("priority", "distance_bonus", "reuse_bonus", "prefetch")
ZERO_PLAN: Plan = ([[0.0] * EXPERTS for _ in range(LAYERS)], [0.0] * LAYERS, 0.0, [])


def simulate(trace: dict[str, list], plan_for: Callable[[int, dict[str, Any]], Plan],
             belady: bool = False, transfer_time: float = TRANSFER_TIME,
             capacity: int = CAPACITY) -> dict[str, float]:
    """Run one trace. ``plan_for(t, obs)`` gives the plan of token t from the causal observation
    ``obs``; with ``belady`` the eviction is Belady's (farthest next use, offline) instead."""
    routing, gates = trace["routing"], trace["gates"]
    T, L = len(routing), LAYERS
    resident: dict[Key, float] = {}  # -> arrival time (in flight while > now)
    last_use: dict[Key, int] = {}
    clock = 0  # recency counter
    now = link_free = 0.0
    transfers = demand = speculative = 0
    stall = 0.0
    uses: dict[Key, list[int]] = {}
    if belady:
        for t in range(T):
            for ly in range(L):
                for e in routing[t][ly]:
                    uses.setdefault((ly, e), []).append(t * L + ly)

    def value(key: Key, layer: int, pos: int, prio: list[list[float]], bonus: list[float]) -> float:
        if belady:
            u = uses.get(key, [])
            i = bisect.bisect_right(u, pos)
            return -(u[i] if i < len(u) else math.inf)  # farther next use = lower value
        v = prio[key[0]][key[1]] + bonus[(key[0] - layer) % L]
        return v + reuse if key[0] <= layer and key[1] in routing[t][key[0]] else v

    def victim(at: float, pinned: set[Key], layer: int, pos: int, prio: list[list[float]],
               bonus: list[float]) -> Key | None:
        best: Key | None = None
        best_v = (math.inf, 0)
        for key, arrival in resident.items():
            if arrival > at or key in pinned:
                continue
            v = (value(key, layer, pos, prio, bonus), last_use[key])
            if v < best_v:
                best, best_v = key, v
        return best

    def issue(key: Key, at: float) -> float:
        nonlocal link_free, transfers, clock
        start = max(link_free, at)
        link_free = start + transfer_time
        resident[key] = link_free
        clock += 1
        last_use[key] = clock
        transfers += 1
        return link_free

    for t in range(T):
        obs = {"token": t, "prev_routing": routing[t - 1] if t else None,
               "prev_gates": gates[t - 1] if t else None,
               "resident": sorted([k[0], k[1]] for k in resident)}
        prio, bonus, reuse, spec = plan_for(t, obs)
        spec_iter = iter(spec)
        for ly in range(L):
            pos = t * L + ly
            need = [(ly, e) for e in routing[t][ly]]
            nxt = [(ly + 1, e) for e in routing[t][ly + 1]] if ly + 1 < L else []
            pinned = set(need) | set(nxt)
            for key in need + nxt:
                if key in resident:
                    continue
                if key in need:
                    demand += 1
                if len(resident) >= capacity:
                    v = victim(now, pinned, ly, pos, prio, bonus)
                    if v is None:  # every slot pinned or in flight: wait for the link
                        now = max(now, link_free)
                        v = victim(now, pinned, ly, pos, prio, bonus)
                    if v is None:
                        raise RuntimeError("internal: no evictable expert although the link is idle")
                    del resident[v]
                issue(key, now)
            start = max([now] + [resident[k] for k in need])
            stall += start - now
            end = start + COMPUTE_TIME
            if not belady:
                while link_free < end:
                    spec_key = next(spec_iter, None)
                    if spec_key is None:
                        break
                    key = spec_key
                    if key in resident:
                        continue
                    at = max(link_free, start)
                    if len(resident) >= capacity:
                        v = victim(at, pinned, ly, pos, prio, bonus)
                        if v is None or value(v, ly, pos, prio, bonus) >= value(key, ly, pos, prio, bonus):
                            continue
                        del resident[v]
                    issue(key, at)
                    speculative += 1
            for key in need:
                clock += 1
                last_use[key] = clock
            now = end
    return {"time": now, "transfers": float(transfers), "demand_misses": float(demand),
            "speculative": float(speculative), "stall": stall}


def constant_plan(t: int, obs: dict[str, Any]) -> Plan:
    """LRU: equal priorities (so the least-recently-used tie-break decides), no speculation."""
    return ZERO_PLAN


def min_fetches(trace: dict[str, list], capacity: int = CAPACITY) -> int:
    """Belady's MIN on the plain request sequence (each layer's k experts requested one after the
    other, no pinning, no prefetching): the fewest fetches any policy can make with ``capacity``
    slots, since every schedule the simulator allows is also a valid schedule for this sequence."""
    seq = [(ly, e) for tok in trace["routing"] for ly in range(LAYERS) for e in tok[ly]]
    nxt = [0] * len(seq)
    last: dict[Key, int] = {}
    for i in range(len(seq) - 1, -1, -1):
        nxt[i] = last.get(seq[i], len(seq))
        last[seq[i]] = i
    cache: dict[Key, int] = {}  # -> next use
    fetches = 0
    for i, key in enumerate(seq):
        if key not in cache:
            fetches += 1
            if len(cache) >= capacity:
                del cache[max(cache, key=cache.__getitem__)]
        cache[key] = nxt[i]
    return fetches


def reference_times(traces: list[dict[str, list]]) -> dict[str, float]:
    """Total simulated time of LRU and of Belady's eviction (both with the pre-gated fetch, no
    speculation), and a lower bound on any policy's time: max(total compute, MIN's fetches *
    TRANSFER_TIME), as the link moves one expert at a time."""
    lru = [simulate(tr, constant_plan) for tr in traces]
    bel = [simulate(tr, constant_plan, belady=True) for tr in traces]
    compute = sum(len(tr["routing"]) * LAYERS * COMPUTE_TIME for tr in traces)
    return {"lru": sum(r["time"] for r in lru), "belady": sum(r["time"] for r in bel),
            "bound": max(compute, sum(min_fetches(tr) for tr in traces) * TRANSFER_TIME)}


# -- the evaluation ---------------------------------------------------------------------------


def evaluate(candidate) -> EvaluationResult:
    traces = [make_trace(s) for s in TRACE_SEEDS]
    lru_time = sum(simulate(tr, constant_plan)["time"] for tr in traces)
    total = 0.0
    stats = {"transfers": 0.0, "demand_misses": 0.0, "speculative": 0.0, "stall": 0.0}
    for i, tr in enumerate(traces):
        def plan_for(t: int, obs: dict[str, Any], i: int = i) -> Plan:
            raw = candidate.call("plan", {"trace": i, **obs, **SETUP}, timeout=CALL_TIMEOUT,
                                 allow_nan=True, max_bytes=1 << 20)
            try:
                return check_plan(raw)
            except ValueError as e:
                raise ValueError(f"plan() for trace {i} token {t}: {e}") from None

        r = simulate(tr, plan_for)
        total += r["time"]
        for k in stats:
            stats[k] += r[k]
    score = lru_time / total
    metrics = {"combined_score": score, "time": total, "lru_time": lru_time, **stats}
    feedback = (f"throughput {score:.4f}x LRU (Belady's offline eviction without speculation: "
                f"{BELADY_RATIO:.4f}x; no policy can exceed {UPPER_BOUND:.4f}x); "
                f"{stats['transfers']:.0f} transfers, "
                f"{stats['demand_misses']:.0f} demand misses, {stats['speculative']:.0f} "
                f"speculative prefetches, {stats['stall']:.1f} time units stalled waiting for "
                f"experts out of {total:.1f}")
    return EvaluationResult(metrics=metrics, artifacts={"feedback": feedback})
