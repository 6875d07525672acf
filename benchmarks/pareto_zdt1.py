"""Pareto search against scalar search on zdt1_front: the hypervolume each run's programs reach.

Run: ``.venv/bin/python benchmarks/pareto_zdt1.py [--max-programs 500] [--seeds 0 1]
[--workers 2] [--out runs/pareto-bench]``

For each seed, two model-free runs of the built-in ``zdt1_front`` with the same budget: its own
config (``objective.metrics: [f1, f2]``, the Pareto selector) and the reference, the island selector
on the scalar score alone (``combined_score = 1 - g``, i.e. ``objective.metrics: []``). For both,
the hypervolume (reference point (1.1, 4.0)) of the non-dominated set of all ok programs, computed
after the run the same way, and the ratio Pareto / scalar. Each run is an ordinary run directory
under ``--out``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from evoforge import api
from evoforge.config import build_config
from evoforge.problem import Problem
from evoforge.program import Status
from evoforge.selectors.pareto import dominates, hypervolume

REF = (1.1, 4.0)


def front_hv(run_dir: Path) -> tuple[float, int, int]:
    """(hypervolume, front size, ok programs) of a finished run's ok programs."""
    with api.inspect_run(run_dir) as (_cfg, storage):
        pts = [(p.metrics["f1"], p.metrics["f2"]) for p in storage.programs()
               if p.status is Status.OK]
    uniq = set(pts)
    front = [p for p in uniq if not any(dominates(q, p) for q in uniq)]
    return hypervolume(front, REF), len(front), len(pts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--max-programs", type=int, default=500)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path,
                    default=Path("runs") / f"pareto-bench-{time.strftime('%Y%m%d-%H%M%S')}")
    args = ap.parse_args(argv)
    prob = Problem.load("zdt1_front")
    rows, ratios = [], []
    for seed in args.seeds:
        hv: dict[str, tuple[float, int, int]] = {}
        for kind in ("pareto", "scalar"):
            extra = {} if kind == "pareto" else {
                "objective": {"metrics": [], "reference_point": None}}
            cfg = build_config(prob.config, {
                "max_programs": args.max_programs, "max_time": None, "seed": seed,
                "evaluation": {"workers": args.workers}}, extra)
            run_dir = args.out / f"{kind}-seed{seed}"
            print(f"seed {seed}, {kind}: running into {run_dir}", file=sys.stderr, flush=True)
            api.evolve(prob, run_dir=run_dir, config=cfg)
            hv[kind] = front_hv(run_dir)
        ratio = hv["pareto"][0] / hv["scalar"][0] if hv["scalar"][0] else float("inf")
        ratios.append(ratio)
        rows.append(f"| {seed} | {hv['pareto'][0]:.4f} ({hv['pareto'][1]} on the front) | "
                    f"{hv['scalar'][0]:.4f} ({hv['scalar'][1]} on the front) | {ratio:.2f} |")
    print(f"zdt1_front, {args.max_programs} programs per run, model-free, "
          f"{args.workers} workers; hypervolume from {REF} (the true front: 4.0667)")
    print("| seed | Pareto selector | scalar (islands on 1 - g) | ratio |")
    print("|---|---|---|---|")
    print("\n".join(rows))
    print(f"mean ratio Pareto / scalar: {statistics.fmean(ratios):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
