"""Crash-test writer: commits programs in a loop and acknowledges each commit on stdout.

Usage: python storage_writer.py DB_PATH COUNT

First records a result for every program left pending by a previous (killed) run, then adds
COUNT new programs, each as two transactions (add pending, record result). A line is printed,
and flushed, only after the commit it acknowledges has returned:
``added ID`` after add_program, ``recorded ID`` after record_result. ``finished`` at the end.
"""

from __future__ import annotations

import sys

from evoforge.program import EvalResult, MutationInfo, Program, Status
from evoforge.storages import SQLiteStorage


def _result(i: int) -> EvalResult:
    if i % 7 == 3:
        return EvalResult(Status.FAILED, reason=f"evaluator raised on {i}",
                          artifacts={"stderr": "Traceback ...\n" * 20})
    return EvalResult(Status.OK, metrics={"combined_score": i / 3, "n": float(i)}, score=i / 3,
                      eval_time=0.01 * i)


def main() -> None:
    path, count = sys.argv[1], int(sys.argv[2])
    with SQLiteStorage(path) as st:
        stats = st.stats()
        seq = stats["next_done_seq"]
        for p in list(st.programs(status=Status.PENDING)):
            st.record_result(p.with_result(_result(p.id), done_seq=seq, evaluated_at=1.0e9 + p.id))
            print(f"recorded {p.id}", flush=True)
            seq += 1
        start = stats["next_id"]
        for i in range(start, start + count):
            p = Program(
                id=i,
                code=f"# program {i}\n" + "x = x * 2 + 1  # padding\n" * 150,
                parent_ids=(i - 1,) if i else (),
                generation=i,
                mutation=MutationInfo(mutator="crash-test", prompt_tokens=10 * i,
                                      completion_tokens=i, cost=0.25),
                created_at=1.0e9 + i,
            )
            st.add_program(p)
            print(f"added {i}", flush=True)
            st.record_result(p.with_result(_result(i), done_seq=seq, evaluated_at=1.0e9 + i))
            print(f"recorded {i}", flush=True)
            seq += 1
    print("finished", flush=True)


if __name__ == "__main__":
    main()
