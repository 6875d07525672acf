"""Parent sampling cost as the population grows (IslandSelector, default config).

Run: ``.venv/bin/python benchmarks/parent_sampling.py [--max N] [--selects K] [--seed S]``

Adds programs in stages up to 1k, 10k and 100k and measures the mean time of ``select()``
at each size and the mean time of ``add()`` over each stage (re-binning, eviction and migration
included; every program is a child, so the adaptive success rates are updated too). Prints a
table with the programs the selector holds in memory (bounded islands and archive) and the ratio
select(largest)/select(1k): about 1 means sampling does not slow down as the population grows
(the peers' O(N) sampling would give ~100). CPU time of this process (``time.process_time``), so
other work on a shared machine disturbs it less. No assertions on time.
"""

from __future__ import annotations

import argparse
import random
import sys
import time

from evoforge.program import Program, Status
from evoforge.selectors.islands import IslandSelector

# Cheap fake code: a shared pool of strings of many lengths (programs reference them, no copies).
_POOL = ["x" * (50 + 10 * k) for k in range(2500)]


def make_program(pid: int, rng: random.Random) -> Program:
    # code length drifts upward as the run goes on (exercises the adaptive bins), with noise
    k = min(len(_POOL) - 1, pid // 50 + rng.randrange(200))
    return Program(id=pid, code=_POOL[k], island=rng.randrange(4), status=Status.OK,
                   score=rng.gauss(pid / 1000, 1.0), parent_ids=(max(0, pid - 1),))


def mean_select_us(sel: IslandSelector, n: int, seed: int) -> float:
    rng = random.Random(seed)
    t0 = time.process_time()
    for _ in range(n):
        sel.select(rng)
    return (time.process_time() - t0) / n * 1e6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max", type=int, default=100_000, help="largest population (default 100k)")
    ap.add_argument("--selects", type=int, default=20_000, help="select() calls per size")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    sizes = [s for s in (1_000, 10_000, 100_000) if s <= args.max] or [args.max]
    rng = random.Random(args.seed)
    sel = IslandSelector()  # default config: 4 islands, code_length x 10 bins
    rows: list[tuple[int, float, float, int, int, int]] = []
    added = 0
    for size in sizes:
        programs = [make_program(pid, rng) for pid in range(added, size)]
        t0 = time.process_time()
        for p in programs:
            sel.add(p)
        add_us = (time.process_time() - t0) / max(1, len(programs)) * 1e6
        added = size
        sel_us = mean_select_us(sel, args.selects, args.seed + size)
        cells = sum(len(sel.cells(i)) for i in range(sel.num_islands))
        rows.append((size, sel_us, add_us, cells, sel.migrations, sel.resident))

    print(f"IslandSelector parent sampling (python {sys.version.split()[0]}, "
          f"{args.selects} selects per size, seed {args.seed})")
    print(f"{'programs':>10} {'select µs':>10} {'add µs':>10} {'cells':>6} {'migrations':>11} "
          f"{'held':>6}")
    for size, sel_us, add_us, cells, migrations, held in rows:
        print(f"{size:>10,} {sel_us:>10.2f} {add_us:>10.2f} {cells:>6} {migrations:>11,} "
              f"{held:>6,}")
    base = rows[0][1]
    last = rows[-1]
    print(f"ratio select({last[0]:,}) / select({rows[0][0]:,}) = {last[1] / base:.2f} "
          "(~1 means O(1) sampling)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
