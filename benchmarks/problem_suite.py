"""Run built-in problems with the model-free mutator for a fixed budget and tabulate the results.

Run: ``.venv/bin/python benchmarks/problem_suite.py [NAME ...] [--max-programs 300]
[--max-time 4m] [--seed 0] [--workers 2] [--out runs/suite]``

For each problem (all built-in ones by default): the initial program's score, the best score after
a model-free run of the given budget (whichever of programs and wall-clock time comes first; same
seed, the problem's own config otherwise),
programs evaluated, and the best-known value with its source, as a Markdown table (the one in
docs/problems.md). Each run is also an ordinary run directory under ``--out`` for
``evoforge status``. With 2 workers the order in which results arrive varies a little, so a rerun
can differ slightly; a run that hits the time limit first depends on the machine's speed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from evoforge import api
from evoforge.config import build_config, parse_duration
from evoforge.problem import Problem, builtin_problems
from evoforge.program import Status
from evoforge.storages import SQLiteStorage


def fmt(x: object) -> str:
    return "-" if x is None else f"{x:.10g}" if isinstance(x, float) else str(x)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("names", nargs="*", help="problems (default: all built-in)")
    ap.add_argument("--max-programs", type=int, default=300)
    ap.add_argument("--max-time", default="4m")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("runs") / f"suite-{time.strftime('%Y%m%d-%H%M%S')}")
    args = ap.parse_args(argv)
    names = args.names or sorted(builtin_problems())
    rows = []
    for name in names:
        prob = Problem.load(name)
        budget = {"max_time": parse_duration(args.max_time), "max_programs": args.max_programs,
                  "seed": args.seed, "evaluation": {"workers": args.workers}}
        cfg = build_config(prob.config, budget)
        run_dir = args.out / name
        print(f"{name}: running into {run_dir}", file=sys.stderr, flush=True)
        outcome = api.evolve(prob, run_dir=run_dir, config=cfg)
        with SQLiteStorage(run_dir / "evoforge.db", readonly=True) as s:
            programs = list(s.programs())
        initial = next((p.score for p in programs if p.id == 0), None)
        ok = sum(p.status is Status.OK for p in programs)
        best = outcome.best.score if outcome.best is not None else None
        meta = prob.meta
        rows.append((name, meta.get("direction", "maximize"), fmt(initial), fmt(best),
                     f"{len(programs)} ({ok} ok)", fmt(meta.get("best_known")),
                     str(meta.get("best_known_source", "-"))))
        print(f"{name}: initial {fmt(initial)} -> best {fmt(best)} ({outcome.reason})",
              file=sys.stderr, flush=True)
    print(f"Model-free mutator, at most {args.max_programs} programs or {args.max_time} per problem, "
          f"seed {args.seed}, {args.workers} evaluation workers.\n")
    print("| problem | direction | initial | after the run | programs | best known | source |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
