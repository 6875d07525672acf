"""Scale-out on Ray: throughput with 1, 2 and 4 nodes, and the Ray executor's overhead.

A Ray cluster on loopback (evoforge.testing.ray_cluster: each node a `ray start` process group
with its own ``--num-cpus``) grows from 1 to 2 to 4 nodes; at each size a full run (real
pipeline, real SQLite storage, ``executor.name=ray``, every evaluation in the node's sandbox)
evolves a problem whose evaluator sleeps E seconds (the machine has 2 real cores: sleeping
evaluations measure the distribution, not the CPU). The LLM stand-in is a FunctionMutator that
answers after a fixed latency with a fresh child, with as many requests in flight as the
pipeline asks for. Throughput is measured in steady state (commits between the first
``slots`` results and the last one) and printed per node count with the scaling efficiency
throughput / (nodes x single-node throughput), target >= 0.9 at 4 nodes, and the ideal
slots / E for reference.

Then the per-evaluation overhead: one slot, a trivial candidate and evaluator, N evaluations
one after another through the LocalExecutor and through the RayExecutor (one node); the mean
latency of each and the difference.

    .venv/bin/python benchmarks/scale_out.py                      # E=0.5 s, 2 slots per node
    .venv/bin/python benchmarks/scale_out.py --eval 1.0 --cpus 1 --programs-per-slot 10
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import ray

from evoforge import api
from evoforge.config import build_config
from evoforge.executors.local import LocalExecutor
from evoforge.executors.ray import RayExecutor
from evoforge.mutators.base import MutationRequest
from evoforge.program import Program, Status
from evoforge.testing import FunctionMutator
from evoforge.testing.ray_cluster import LocalRayCluster

INITIAL = "# EVOLVE-BLOCK-START\nVALUE = 0\n# EVOLVE-BLOCK-END\n"
EVALUATOR = """
import time
def evaluate(program_path):
    t0 = time.monotonic()
    ns = {{}}
    exec(open(program_path).read(), ns)
    time.sleep(max(0.0, {E} - (time.monotonic() - t0)))
    return {{"combined_score": float(ns["VALUE"])}}
"""


def make_problem(root: Path, seconds: float) -> Path:
    d = root / f"sleep_{seconds:g}"
    d.mkdir()
    (d / "initial_program.py").write_text(INITIAL)
    (d / "evaluator.py").write_text(EVALUATOR.format(E=seconds))
    return d


def mutator(latency: float) -> FunctionMutator:
    async def child(req: MutationRequest) -> str:
        await asyncio.sleep(latency)  # an LLM round trip: I/O, any number in flight
        return f"# EVOLVE-BLOCK-START\nVALUE = {req.proposal_id}\n# EVOLVE-BLOCK-END\n"

    return FunctionMutator(child, name="stand-in")


def run_once(problem: Path, root: Path, address: str, programs: int, slots: int,
             latency: float) -> tuple[float, int]:
    """One run on the cluster; (steady-state programs/s, programs)."""
    times: list[float] = []
    cfg = build_config({
        "max_programs": programs, "seed": 1,
        "executor": {"name": "ray", "address": address},
        "evaluation": {"timeout": 60, "reverify": 0, "noise_samples": 0, "cache": "off"},
    })

    def on_event(p: Program) -> None:
        times.append(time.monotonic())

    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=root))
    cpu0 = time.process_time()  # the controller's CPU (all its threads, Ray's driver too)
    outcome = api.evolve(problem, run_dir=run_dir, config=cfg, mutator=mutator(latency),
                         on_event=on_event)
    assert outcome.ok, outcome.message
    times.sort()
    start = min(max(slots, 1), len(times) - 2)
    rate = (len(times) - 1 - start) / (times[-1] - times[start])
    gaps = [b - a for a, b in zip(times[start:], times[start + 1:], strict=False)]
    cpu = time.process_time() - cpu0
    print(f"  run: {len(times)} results, longest gap between results {max(gaps):.2f} s, "
          f"whole run {times[-1] - times[0]:.1f} s, controller CPU "
          f"{1000 * cpu / len(times):.1f} ms per result", flush=True)
    return rate, len(times)


async def _latency(executor: object, code: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.monotonic()
        r = await executor.evaluate(code)  # type: ignore[attr-defined]
        assert r.status is Status.OK, r.reason
        out.append(time.monotonic() - t0)
    await executor.aclose()  # type: ignore[attr-defined]
    return out


def overhead(root: Path, address: str, n: int) -> tuple[float, float]:
    problem = make_problem(root, 0.0)
    code = INITIAL.replace("VALUE = 0", "VALUE = 1")
    local = LocalExecutor(problem, workers=1, timeout=30)
    t_local = asyncio.run(_latency(local, code, n))
    rex = RayExecutor(problem, {"timeout": 30}, address=address, timeout=30, slots=1).connect()
    t_ray = asyncio.run(_latency(rex, code, n))
    # the first of each starts its worker processes: steady state only
    return statistics.mean(t_local[2:]), statistics.mean(t_ray[2:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--eval", type=float, default=0.5, help="seconds per evaluation (E)")
    ap.add_argument("--cpus", type=int, default=2, help="CPUs (= slots) per node")
    ap.add_argument("--nodes", default="1,2,4", help="node counts to measure")
    ap.add_argument("--programs-per-slot", type=int, default=12)
    ap.add_argument("--latency", type=float, default=0.05, help="LLM stand-in latency (s)")
    ap.add_argument("--overhead-n", type=int, default=30)
    args = ap.parse_args()
    counts = [int(x) for x in args.nodes.split(",")]
    root = Path(tempfile.mkdtemp(prefix="evoforge-scale-"))
    problem = make_problem(root, args.eval)
    cluster = LocalRayCluster()
    rows = []
    try:
        cluster.add_node("n1", args.cpus)
        ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
        print(f"E={args.eval:g} s, {args.cpus} slots per node, LLM stand-in "
              f"{args.latency:g} s; cluster at {cluster.address}", flush=True)
        base = None
        for n in counts:
            while len(cluster.nodes) < n:
                cluster.add_node(f"n{len(cluster.nodes) + 1}", args.cpus)
            programs = args.programs_per_slot * n * args.cpus
            slots = n * args.cpus  # what the executor finds: each node holds cpus requests
            rate, done = run_once(problem, root, cluster.address, programs, slots, args.latency)
            base = base if base is not None else rate / n  # per node, at the first count
            eff = rate / (n * base)
            ideal = slots / args.eval
            rows.append((n, slots, done, rate, eff, ideal))
            print(f"nodes={n} slots={slots} programs={done} throughput={rate:.2f}/s "
                  f"(ideal {ideal:.1f}/s, {rate / ideal:.2f} of it) efficiency={eff:.2f}",
                  flush=True)
        t_local, t_ray = overhead(root, cluster.address, args.overhead_n)
        print(f"per-evaluation latency, trivial candidate, 1 slot: local {t_local * 1000:.0f} ms, "
              f"ray {t_ray * 1000:.0f} ms, overhead {1000 * (t_ray - t_local):+.0f} ms "
              f"({t_ray / t_local:.2f}x)")
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.stop()
        shutil.rmtree(cluster.root, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)
    print("\n| nodes | slots | throughput (programs/s) | ideal slots/E | efficiency |")
    print("|---|---|---|---|---|")
    for n, slots, _, rate, eff, ideal in rows:
        print(f"| {n} | {slots} | {rate:.2f} | {ideal:.1f} | {eff:.2f} |")


if __name__ == "__main__":
    main()
