"""Resume at scale: a run with N stored programs (synthesised through the Storage API), resumed
until its first new proposal.

    .venv/bin/python benchmarks/resume_scale.py            # N = 100,000
    .venv/bin/python benchmarks/resume_scale.py --n 20000

Prints ``resume at N programs: X s`` (target <= 5 s at 100,000) and the peak memory of the
process. The programs are children of the initial program with distinct scores, code sizes and
islands, so the selector's index (islands, MAP-Elites cells, archive) is rebuilt for real.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from evoforge import api
from evoforge.config import build_config
from evoforge.problem import Problem
from evoforge.program import EvalResult, MutationInfo, Program, Status
from evoforge.stop import StopWhen
from evoforge.storages import SQLiteStorage
from evoforge.testing import FunctionExecutor, FunctionMutator

PROGRAM = "# EVOLVE-BLOCK-START\nX = 0\n# EVOLVE-BLOCK-END\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        problem_dir = Path(tmp) / "problem"
        problem_dir.mkdir()
        (problem_dir / "initial_program.py").write_text(PROGRAM)
        (problem_dir / "evaluator.py").write_text(
            "def evaluate(p):\n    return {'combined_score': 0.0}\n")
        problem = Problem.load(problem_dir)
        cfg = build_config(problem.config, {"max_programs": a.n + 10,
                                            "evaluation": {"reverify": 0}})
        run_dir = Path(tmp) / "run"
        # a run with the initial program, then N synthetic results written through Storage
        api.evolve(problem, run_dir=run_dir, config=build_config(cfg.model_dump(),
                                                                 {"max_programs": 1}),
                   mutator=FunctionMutator(lambda r: None),
                   executor=FunctionExecutor(lambda code: 0.0))
        t0 = time.monotonic()
        with SQLiteStorage(run_dir / "evoforge.db") as st:
            stats = st.stats()
            next_id, next_done = stats["next_id"], stats["next_done_seq"]
            for i in range(a.n):
                code = PROGRAM.replace("X = 0", f"X = {i}" + " " * (i % 500))
                p = Program(id=next_id + i, code=code, parent_ids=(0,), island=i % 4,
                            generation=1 + i % 50, mutation=MutationInfo(mutator="synthetic"))
                st.add_program(p)
                st.record_result(p.with_result(
                    EvalResult(Status.OK if i % 5 else Status.FAILED,
                               score=float(i % 977) if i % 5 else None,
                               metrics={"combined_score": float(i % 977)} if i % 5 else {},
                               reason="" if i % 5 else "synthetic failure"),
                    done_seq=next_done + i, evaluated_at=time.time()))
        print(f"synthesised {a.n:,} programs in {time.monotonic() - t0:.1f} s")

        first: list[float] = []
        t0 = time.monotonic()

        def mutate(request):
            first.append(time.monotonic() - t0)
            return None

        outcome = api.resume(run_dir, overrides=[f"max_programs={a.n * 2}"],
                             mutator=FunctionMutator(mutate),
                   executor=FunctionExecutor(lambda code: 0.0),
                   stop=StopWhen(lambda run: bool(first), name="first_proposal"))
        print("resume outcome:", outcome.reason, outcome.message[:200])
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"resume at {a.n} programs: {first[0]:.2f} s (to the first new proposal)")
    print(f"peak memory of this process: {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
