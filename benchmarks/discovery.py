"""Discovery quality: the best score each search engine reaches for a fixed number of LLM calls.

Four small problems (``benchmarks/discovery_problems/``, each an ordinary problem directory whose
program keeps its numbers inside an EVOLVE block, evaluated in milliseconds):

* ``rastrigin_6``: continuous and multimodal (a shifted Rastrigin function of 6 literals);
* ``spread_points_6``: geometric with a feasibility constraint (6 points in the unit square, the
  smallest pairwise distance; a point outside the square is an error);
* ``tardiness_rule``: a heuristic scored on fixed instances (the weights of a dispatching rule,
  total weighted tardiness on 8 seeded single-machine instances, relative to WSPT);
* ``deceptive_trap``: deceptive (4 literals on a trap: a broad peak next to the start, a
  narrow and higher one behind a dip; refining the best program gets stuck on the broad one).

The "LLM" is the test server in perturb mode (:mod:`evoforge.testing.perturb`): every reply is a
SEARCH/REPLACE diff moving one numeric literal of the parent in the prompt by a Gaussian step
(scale 0.1 of its magnitude, floor 1). That leaves the parent choice as the only difference
between engines, which is what this benchmark compares:

* ``islands`` (evoforge's default selector), ``random_sampling`` and ``greedy``: real evoforge
  runs (``api.evolve``: pipeline, run, SQLite storage) through the real LLM mutator and its
  OpenAI client, 4 requests in flight (``llm.concurrency`` 4), 2 evaluation slots,
  re-verification off (``evaluation.reverify: 0``: the evaluators are deterministic, so
  re-running a new best could only cost evaluations) and hedging off (``llm.hedge: false``: a twin
  request would draw a second perturbation, so replies would depend on timing). The evaluator
  runs in this process (a ``FunctionExecutor`` calling its ``evaluate``), because a sandboxed
  evaluation costs 25-150 ms on a busy 2-core machine, 20-50x the evaluation itself;
  ``--executor sandbox`` uses evoforge's real ``LocalExecutor`` instead (about 5x the wall time);
* ``hill_climber``: a (1+1) reference written here: perturb the best program with the same
  operator (:meth:`Perturbing.mutate`, no prompt, no server), evaluate it in-process with the same
  evaluator, keep it if strictly better; the same number of calls.

The operator's randomness depends only on the seed, the parent's code and how many times that
code was perturbed before, so engines on the same seed share one stream of perturbations. An
evoforge run is not bit-for-bit repeatable all the same: with 4 proposals in flight, which results
a parent choice has seen depends on timing (``random_sampling`` aside, which always picks the
initial program). Differences between engines smaller than the spread across seeds are noise.

Normalisation (so "higher is better" and ratios mean something): with S0 the initial program's
score and S* the best known (``best_known`` in each problem.yaml: the true optimum for three
problems, the best found by long searches for ``tardiness_rule``),

    gain   = (S - S0) / (S* - S0)   0 = no progress, 1 = the optimum
    regret = 1 - gain               the share of the initial gap left

Each run makes the largest budget's calls; a smaller budget reads the best of the run's first
``budget`` children (nothing in a search depends on its budget, so that is the run a smaller
budget would have made), which saves a run per budget. Runs go one per process
(``--jobs``, default one per CPU). Per problem and budget the table shows each engine's mean best
score, mean gain with its standard error (the spread across seeds is large: compare engines by
it, not by the third decimal), the gain per seed, the default's gain minus the engine's seed by
seed (mean ± standard error: engines on one seed share its perturbations, so this paired
difference is several times tighter than the two means' errors and is what to compare them by),
and two ratios against evoforge's default: ``default/engine`` on gain and ``engine/default`` on
regret; above 1 the default did better, below 1 worse. Below the table, each engine's *parent lag*:
the results committed between a child's proposal and its own result (what its parent choice had
not seen; about 2.8 in full runs with paced requests, 4.7 without, ``in-flight - 1`` in
``--simulate``). ``--in-flight N`` sets the requests in flight (``llm.concurrency``; with
``--simulate`` the proposals in flight), to measure how an engine copes with staler parent choices
(``--simulate --in-flight 5`` was the closer stand-in for unpaced full runs, ``--in-flight 4`` is
for paced ones).

    .venv/bin/python benchmarks/discovery.py                    # 4 problems, budgets 200 600, 10 seeds
    .venv/bin/python benchmarks/discovery.py --quick            # smoke test: budget 40, 1 seed
    .venv/bin/python benchmarks/discovery.py --problems deceptive_trap --budgets 600 --seeds 5
    .venv/bin/python benchmarks/discovery.py --simulate --seeds 40 --engines "islands,greedy"
    .venv/bin/python benchmarks/discovery.py --simulate --in-flight 5 --seeds 40
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from evoforge import api
from evoforge.config import build_config
from evoforge.problem import Problem
from evoforge.testing.fakes import FunctionExecutor
from evoforge.testing.openai_server import OpenAITestServer
from evoforge.testing.perturb import perturbing

HERE = Path(__file__).resolve().parent / "discovery_problems"
PROBLEMS = ("rastrigin_6", "spread_points_6", "tardiness_rule", "deceptive_trap")
SELECTORS = ("islands", "random_sampling", "greedy")
ENGINES = (*SELECTORS, "hill_climber")
DEFAULT = "islands"
CONCURRENCY = 4
WORKERS = 2


@dataclass
class Result:
    best: dict[int, float]  # budget -> best score among the first `budget` children
    calls: int  # LLM requests the server answered (the hill climber: perturbations)
    children: int  # programs made after the initial one
    seconds: float
    lag: float | None = None  # mean results committed between a child's proposal and its result


def load_evaluator(problem: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"discovery_eval_{problem.name}",
                                                  problem / "evaluator.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def score_in_process(evaluator: ModuleType, code: str, path: Path) -> float | None:
    path.write_text(code)
    try:
        return float(evaluator.evaluate(str(path))["combined_score"])
    except Exception:  # an infeasible or broken child: rejected, as a failed evaluation would be
        return None


def hill_climber(problem: Path, budgets: list[int], seed: int, scale: float,
                 tmp: Path) -> Result:
    t0 = time.monotonic()
    evaluator = load_evaluator(problem)
    op = perturbing(seed, scale)
    best = (problem / "initial_program.py").read_text()
    best_score = score_in_process(evaluator, best, tmp / "candidate.py")
    assert best_score is not None, f"{problem.name}: the initial program fails"
    at: dict[int, float] = {}
    for call in range(1, max(budgets) + 1):
        child = op.mutate(best)
        if child is not None:
            s = score_in_process(evaluator, child, tmp / "candidate.py")
            if s is not None and s > best_score:
                best, best_score = child, s
        if call in budgets:
            at[call] = best_score
    return Result(at, max(budgets), max(budgets), time.monotonic() - t0)


def in_process_executor(problem: Path, tmp: Path) -> FunctionExecutor:
    """The problem's evaluator called in this process (a failure is a failed program)."""
    evaluator = load_evaluator(problem)
    path = tmp / f"{problem.name}-candidate.py"

    def run(code: str) -> dict[str, float]:
        path.write_text(code)
        out = evaluator.evaluate(str(path))
        return {k: float(v) for k, v in out.items()}

    return FunctionExecutor(run, slots=WORKERS)


def engine_spec(engine: str) -> tuple[str, dict[str, Any]]:
    """``name`` or ``name[key=value;...]``: a selector and overrides of its settings (values
    parsed as YAML; a dotted key is any config key), e.g.
    ``islands[num_islands=2;pipeline.slow_start=false]``."""
    import yaml

    name, _, rest = engine.partition("[")
    overrides: dict[str, Any] = {}
    if rest:
        if not rest.endswith("]"):
            raise ValueError(f"engine {engine!r}: expected name[key=value;...]")
        for item in filter(None, rest[:-1].split(";")):
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"engine {engine!r}: {item!r} is not key=value")
            overrides[key.strip()] = yaml.safe_load(value)
    return name.strip(), overrides


def nested(key: str, value: Any) -> dict[str, Any]:
    """``a.b.c``, v -> {"a": {"b": {"c": v}}}."""
    out: dict[str, Any] = {}
    cur = out
    *heads, last = key.split(".")
    for h in heads:
        cur = cur.setdefault(h, {})
    cur[last] = value
    return out


def engine_config(engine: str, base: dict[str, Any]) -> Any:
    """The evoforge Config of ``base`` with the engine's selector and its settings (a dotted
    key is any config key)."""
    name, overrides = engine_spec(engine)
    return build_config({**base, "selector": {
        "name": name, **{k: v for k, v in overrides.items() if "." not in k}}},
        *(nested(k, v) for k, v in overrides.items() if "." in k))


def evoforge_run(problem: Path, selector: str, budgets: list[int], seed: int, scale: float,
                 tmp: Path, executor: str = "inprocess", in_flight: int = CONCURRENCY) -> Result:
    """One run of ``max(budgets)`` calls; the best at a smaller budget is the best of the
    first ``budget`` children (ids 1..budget: a proposal is one call), which is what a run
    stopped there would have made (nothing in the search depends on the budget)."""
    t0 = time.monotonic()
    budget = max(budgets)
    prob = Problem.load(problem)
    with OpenAITestServer(perturbing(seed, scale)) as srv:
        cfg = engine_config(selector, {
            "seed": seed,
            "max_programs": budget + 1,  # the initial program counts as one
            "mutator": {"name": "llm", "edit_mode": "diff"},
            "llm": {"base_url": srv.base_url, "models": ["perturb"], "concurrency": in_flight,
                    "request_timeout": 30, "api_key_env": "EVOFORGE_BENCH_NO_KEY",
                    "hedge": False},
            "evaluation": {"workers": WORKERS, "timeout": 30, "reverify": 0},
        })
        run_dir = tmp / f"{problem.name}-{cfg.selector.name}-{budget}-{seed}-{len(os.listdir(tmp))}"
        outcome = api.evolve(prob, run_dir=run_dir, config=cfg, executor=(
            in_process_executor(problem, tmp) if executor == "inprocess" else None))
        calls = srv.request_count
    if not outcome.ok or outcome.best is None or outcome.best.score is None:
        raise RuntimeError(f"{problem.name} {selector} budget {budget} seed {seed}: "
                           f"{outcome.reason}: {outcome.message}")
    from evoforge.program import Status
    from evoforge.storages import SQLiteStorage

    init = float("-inf")
    best = {b: init for b in budgets}
    lags: list[int] = []
    with SQLiteStorage(run_dir / "evoforge.db", readonly=True) as s:
        children = s.stats()["next_id"] - 1
        for p in s.programs():
            if p.id and p.done_seq is not None and p.mutation.view is not None:
                lags.append(p.done_seq - p.mutation.view)
            if p.status is not Status.OK or p.score is None:
                continue
            for b in budgets:
                if p.id <= b and p.score > best[b]:
                    best[b] = float(p.score)
    if best[budget] != float(outcome.best.score):
        raise RuntimeError(f"{problem.name} {selector} seed {seed}: the stored programs' best "
                           f"{best[budget]} is not the run's best {outcome.best.score}")
    return Result(best, calls, children, time.monotonic() - t0,
                  statistics.mean(lags) if lags else None)


def simulate(problem: Path, engine: str, budgets: list[int], seed: int, scale: float,
             tmp: Path, in_flight: int = CONCURRENCY) -> Result:
    """The selector alone (``--simulate``): the engine's selector, built from the same config
    as a run, drives the same operator with ``in_flight`` proposals in flight, results
    returning in order (what a run with instant replies and evaluations does: each parent is
    chosen ``in_flight - 1`` results before its child's own result). No server, pipeline or
    storage (of the pipeline's settings only ``pipeline.slow_start`` and ``pipeline.rebase``
    apply; a child is rebased as :meth:`evoforge.run.Run.record_child` does, its reply seeing
    the results up to the one before its own): about 10x faster, for comparing selector
    settings over many seeds; confirm a finding with full runs."""
    import random
    from collections import deque

    from evoforge.program import MutationInfo, Program, Status
    from evoforge.rebase import Rebaser
    from evoforge.registry import make_selector
    from evoforge.selectors.base import Selection

    t0 = time.monotonic()
    cfg = engine_config(engine, {"seed": seed})
    evaluator = load_evaluator(problem)
    op = perturbing(seed, scale)
    code = (problem / "initial_program.py").read_text()
    s0 = score_in_process(evaluator, code, tmp / "candidate.py")
    assert s0 is not None, f"{problem.name}: the initial program fails"
    selector = make_selector(cfg)
    initial = Program(id=0, code=code, status=Status.OK, score=s0, done_seq=0)
    selector.add(initial)
    rebaser = Rebaser(lambda a, b: a > b) if cfg.pipeline.rebase else None
    unseen: Program | None = initial  # the newest result: not seen yet by the next reply
    best, at, lags = s0, {}, []
    pending: deque[tuple[int, Selection]] = deque()
    for call in range(1, max(budgets) + 1):
        # pipeline.slow_start: at most twice the population (or 2 + the results) ahead
        window = (min(in_flight, max(2 * len(selector), 1 + call))
                  if cfg.pipeline.slow_start else in_flight)
        while len(pending) < window and call + len(pending) <= max(budgets):
            pending.append((call - 1, selector.select(
                random.Random(f"{seed}:select:{call + len(pending)}"))))
        view, sel = pending.popleft()
        lags.append(call - 1 - view)
        child = op.mutate(sel.parent.code)
        parent, selected = sel.parent, None
        moved = (rebaser.rebase(sel, child, view + 1)  # view + 1 results were committed
                 if rebaser is not None and child is not None else None)
        if moved is not None:
            (child, parent), selected = moved, sel.parent.id
        if rebaser is not None and unseen is not None:
            rebaser.observe(unseen)  # the result before this child's: seen from the next one
        score = (score_in_process(evaluator, child, tmp / "candidate.py")
                 if child is not None else None)
        status = (Status.INVALID if child is None
                  else Status.OK if score is not None else Status.FAILED)
        unseen = Program(id=call, code=child or "", parent_ids=(parent.id,),
                         island=sel.island, status=status, score=score, done_seq=call,
                         mutation=MutationInfo(explored=sel.explored, selected=selected))
        selector.add(unseen)
        if score is not None and score > best:
            best = score
        if call in budgets:
            at[call] = best
    return Result(at, max(budgets), max(budgets), time.monotonic() - t0, statistics.mean(lags))


Job = tuple[str, str, int, list[int], float, str, int]


def one_job(job: Job) -> Result:
    """One engine on one problem and seed, at every budget (a worker process's unit)."""
    name, engine, seed, budgets, scale, executor, in_flight = job
    logging.getLogger("evoforge").setLevel(logging.ERROR)  # the plain-form integrity warning
    os.environ.pop("EVOFORGE_BENCH_NO_KEY", None)
    with tempfile.TemporaryDirectory(prefix="evoforge-discovery-") as tmpdir:
        if engine == "hill_climber":
            return hill_climber(HERE / name, budgets, seed, scale, Path(tmpdir))
        if executor == "simulate":
            return simulate(HERE / name, engine, budgets, seed, scale, Path(tmpdir), in_flight)
        return evoforge_run(HERE / name, engine, budgets, seed, scale, Path(tmpdir), executor,
                            in_flight)


def meta(problem: Path) -> dict[str, Any]:
    import yaml

    return yaml.safe_load((problem / "problem.yaml").read_text())


def fmt(x: float) -> str:
    return f"{x:.4g}" if abs(x) < 1e4 else f"{x:.3e}"


def ratio(a: float, b: float) -> str:
    if b == 0:
        return "inf" if a > 0 else "-"
    return f"{a / b:.2f}"


def mean_se(xs: list[float]) -> tuple[float, float]:
    """Mean and its standard error (0 for one value)."""
    return statistics.mean(xs), (statistics.stdev(xs) / len(xs) ** 0.5) if len(xs) > 1 else 0.0


def paired(a: list[float], b: list[float]) -> tuple[float, float]:
    """Mean and standard error of a - b seed by seed (the engines share each seed's stream of
    perturbations, so the paired difference is far tighter than the two means' errors)."""
    return mean_se([x - y for x, y in zip(a, b, strict=True)])


def main(argv: list[str] | None = None) -> int:
    doc = __doc__ or ""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=doc[doc.index("Normalisation"):])
    ap.add_argument("--problems", default=",".join(PROBLEMS),
                    help=f"comma-separated (default: all: {','.join(PROBLEMS)})")
    ap.add_argument("--budgets", default="200,600", help="LLM calls per run, comma-separated")
    ap.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1 (default 10)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                    help="runs at once, one per process (default: one per CPU)")
    ap.add_argument("--engines", default=",".join(ENGINES),
                    help=f"comma-separated subset of {','.join(ENGINES)}; a selector may take "
                    "settings: islands[num_islands=2;exploitation_ratio=0.7]")
    ap.add_argument("--scale", type=float, default=0.1,
                    help="perturbation step relative to a literal's magnitude (default 0.1)")
    ap.add_argument("--executor", choices=("inprocess", "sandbox"), default="inprocess",
                    help="evoforge runs' evaluations: in this process (default) or evoforge's "
                    "sandboxed LocalExecutor")
    ap.add_argument("--simulate", action="store_true",
                    help="the selectors alone, no server, pipeline or storage (about 10x "
                    "faster; for comparing selector settings over many seeds)")
    ap.add_argument("--in-flight", type=int, default=CONCURRENCY, metavar="N",
                    help=f"LLM requests in flight (llm.concurrency; with --simulate, proposals "
                    f"in flight; default {CONCURRENCY}): how stale each parent choice is")
    ap.add_argument("--seed0", type=int, default=0, help="first seed (default 0)")
    ap.add_argument("--quick", action="store_true", help="smoke test: budget 40, 1 seed")
    ap.add_argument("--json", type=Path, default=None,
                    help="also write every run's result (problem, budget, engine, seed, best "
                    "score, calls, seconds) to this file")
    args = ap.parse_args(argv)
    problems = [p.strip() for p in args.problems.split(",") if p.strip()]
    for p in problems:
        if not (HERE / p / "evaluator.py").is_file():
            ap.error(f"unknown problem {p!r}; known: {', '.join(PROBLEMS)}")
    budgets = [int(b) for b in args.budgets.split(",")]
    seeds = list(range(args.seed0, args.seed0 + args.seeds))
    if args.simulate:
        args.executor = "simulate"
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    for e in engines:
        if engine_spec(e)[0] not in ENGINES:
            ap.error(f"unknown engine {e!r}; known: {', '.join(ENGINES)}")
    if args.in_flight < 1:
        ap.error(f"--in-flight must be at least 1 (got {args.in_flight})")
    if DEFAULT not in engines:
        ap.error(f"--engines must include {DEFAULT} (the ratios are against it)")
    if args.quick:
        budgets, seeds = [40], [0]
    budgets = sorted(set(budgets))

    import evoforge

    print(f"evoforge from {Path(evoforge.__file__).parent}", file=sys.stderr, flush=True)
    started = time.monotonic()
    jobs: list[Job] = [(name, engine, seed, budgets, args.scale, args.executor, args.in_flight)
            for name in problems for engine in engines for seed in seeds]
    results: dict[tuple[str, int, str], list[Result]] = {}
    finished: dict[tuple[str, str, int], Result] = {}

    def record(job: Job, r: Result) -> None:
        name, engine, seed = job[:3]
        finished[(name, engine, seed)] = r
        at = ", ".join(f"@{b}: {fmt(r.best[b])}" for b in budgets)
        print(f"{name} {engine} seed {seed}: best {at} ({r.calls} calls, {r.seconds:.1f} s)",
              file=sys.stderr, flush=True)

    if args.jobs > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(args.jobs) as pool:
            for job, r in zip(jobs, pool.map(one_job, jobs), strict=True):
                record(job, r)
    else:
        for job in jobs:
            record(job, one_job(job))
    for (name, engine, _), r in sorted(finished.items(), key=lambda kv: kv[0][2]):
        for budget in budgets:
            results.setdefault((name, budget, engine), []).append(r)
    total = time.monotonic() - started
    if args.json is not None:
        import json

        rows = [{"problem": n, "budget": b, "engine": e, "seed": seeds[k], "best": r.best[b],
                 "calls": b, "children": r.children, "seconds": round(r.seconds, 3),
                 "lag": r.lag}
                for (n, b, e), rs in results.items() for k, r in enumerate(rs)]
        args.json.write_text(json.dumps({"evoforge": str(Path(evoforge.__file__).parent),
                                         "scale": args.scale, "executor": args.executor,
                                         "total_seconds": round(total, 1), "runs": rows},
                                        indent=1) + "\n")

    setup = (f"selector simulation (--simulate: {args.in_flight} proposals in flight, no "
             "server, pipeline or storage), " if args.simulate else
             f"perturb-mode test server, llm.concurrency {args.in_flight}, {WORKERS} evaluation "
             f"slots ({args.executor}), reverify 0, hedge off, ")
    print(f"Discovery benchmark (evoforge from {Path(evoforge.__file__).parent}): {setup}"
          f"perturbation scale {args.scale}, "
          f"seeds {seeds[0]}..{seeds[-1]}, budgets {', '.join(map(str, budgets))} calls "
          f"(each run makes {max(budgets)} calls; a smaller budget reads the best of its first "
          "children).\n")
    print("| problem | budget | engine | best score (mean) | gain (mean ± s.e.) | gain per seed "
          "| default − engine (paired ± s.e.) | default/engine (gain) "
          "| engine/default (regret) | s/run |")
    print("|---|---:|---|---:|---:|---|---:|---:|---:|---:|")
    summary: list[tuple[str, int, str, float, float, float]] = []
    for name in problems:
        problem = HERE / name
        evaluator = load_evaluator(problem)
        with tempfile.TemporaryDirectory() as t:
            s0 = score_in_process(evaluator, (problem / "initial_program.py").read_text(),
                                  Path(t) / "p.py")
        assert s0 is not None
        star = float(meta(problem)["best_known"])
        for budget in budgets:
            gains: dict[str, list[float]] = {}
            for engine in engines:
                rs = results[(name, budget, engine)]
                gains[engine] = [(r.best[budget] - s0) / (star - s0) for r in rs]
            dg = statistics.mean(gains[DEFAULT])
            for engine in engines:
                rs = results[(name, budget, engine)]
                g, se = mean_se(gains[engine])
                per = " ".join(f"{x:.3f}" for x in gains[engine])
                d, dse = paired(gains[DEFAULT], gains[engine])
                diff = "" if engine == DEFAULT else f"{d:+.3f} ± {dse:.3f}"
                print(f"| {name} | {budget} | {engine} "
                      f"| {fmt(statistics.mean(r.best[budget] for r in rs))} "
                      f"| {g:.3f} ± {se:.3f} | {per} | {diff} | {ratio(dg, g)} "
                      f"| {ratio(1 - g, 1 - dg)} | {statistics.mean(r.seconds for r in rs):.1f} |")
                summary.append((name, budget, engine, g, d, dse))
    lagged = {e: [r.lag for (_, e2, _), r in finished.items() if e2 == e and r.lag is not None]
              for e in engines}
    if any(lagged.values()):
        print("\nParent lag (results committed between a child's proposal and its own result, "
              "mean over children, problems and seeds: what its parent choice had not seen): "
              + ", ".join(f"{e} {statistics.mean(v):.2f}" for e, v in lagged.items() if v))
    print("\nS0 and S* per problem (gain = (S - S0) / (S* - S0)):")
    for name in problems:
        problem = HERE / name
        evaluator = load_evaluator(problem)
        with tempfile.TemporaryDirectory() as t:
            s0 = score_in_process(evaluator, (problem / "initial_program.py").read_text(),
                                  Path(t) / "p.py")
        m = meta(problem)
        print(f"  {name}: S0 = {fmt(s0 or 0.0)}, S* = {fmt(float(m['best_known']))} "
              f"({str(m.get('best_known_source', '')).split(' (')[0]})")
    worst = [row for row in summary if row[2] != DEFAULT and row[4] < 0]
    if worst:
        print("\nWhere the default reaches less than another engine (mean gain, and the paired "
              "difference over the same seeds with its standard error):")
        for n, b, e, g, d, dse in sorted(worst, key=lambda t: t[4]):
            print(f"  {n} budget {b}: {DEFAULT} {g + d:.3f} vs {e} {g:.3f} ({d:+.3f} ± {dse:.3f})")
    print(f"\nTotal wall time: {total:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
