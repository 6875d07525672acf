"""Throughput with a flaky LLM endpoint: 5% of requests hang, against the same run without.

An OpenAI-compatible test server on 127.0.0.1 answers after a latency L with a full rewrite; in
the faulty run a seeded 5% of requests never answer. Same pipeline as
``benchmarks/pipeline_throughput.py`` (real LLM mutator, real executor, real SQLite), same budget,
``llm.request_timeout`` = 120 s (the default ceiling) and the default adaptive deadline (4x the
observed p95 latency, floor ``llm.timeout_floor``). Prints both throughputs and their ratio
(target >= 0.85), and how long the hung requests held their slots.

    .venv/bin/python benchmarks/llm_faults.py                 # L=0.5 s, E=0.25 s, 200 programs
    .venv/bin/python benchmarks/llm_faults.py --floor 15      # the default floor (slower to adapt)
"""

from __future__ import annotations

import argparse
import random
import tempfile
import threading
import time
from pathlib import Path

from evoforge import api
from evoforge.config import build_config
from evoforge.storages import SQLiteStorage
from evoforge.testing.openai_server import ChatRequest, OpenAITestServer, hang, reply

INITIAL = "# EVOLVE-BLOCK-START\nVALUE = 0\n# EVOLVE-BLOCK-END\n"
EVALUATOR = """
import time
def evaluate(program_path):
    ns = {{}}
    exec(open(program_path).read(), ns)
    time.sleep({E})
    return {{"combined_score": float(ns["VALUE"])}}
"""


def script(fault_rate: float, seed: int):
    rng = random.Random(seed)
    lock = threading.Lock()

    def answer(req: ChatRequest):
        with lock:
            faulty = rng.random() < fault_rate
        if faulty:
            return hang()
        return reply(f"```python\n# EVOLVE-BLOCK-START\nVALUE = {req.index + 1}\n"
                     "# EVOLVE-BLOCK-END\n```", prompt_tokens=900, completion_tokens=40)

    return answer


def run_once(a: argparse.Namespace, fault_rate: float) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp, OpenAITestServer(
            script(fault_rate, a.seed), latency=a.latency) as srv:
        prob = Path(tmp) / "problem"
        prob.mkdir()
        (prob / "initial_program.py").write_text(INITIAL)
        (prob / "evaluator.py").write_text(EVALUATOR.format(E=a.eval))
        cfg = build_config({
            "max_programs": a.programs, "mutator": {"name": "llm", "edit_mode": "rewrite"},
            "llm": {"base_url": srv.base_url, "models": ["bench"], "concurrency": a.concurrency,
                    "request_timeout": 120, "timeout_floor": a.floor,
                    "api_key_env": "EVOFORGE_BENCH_NO_KEY"},
            "evaluation": {"workers": a.workers, "timeout": 30, "reverify": 0},
        })
        t0 = time.monotonic()
        outcome = api.evolve(prob, run_dir=Path(tmp) / "run", config=cfg)
        wall = time.monotonic() - t0
        requests = srv.request_count
        with SQLiteStorage(Path(tmp) / "run" / "evoforge.db", readonly=True) as s:
            done = sum(1 for _ in s.programs())
    assert outcome.ok, outcome.message
    return done / wall, requests


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--programs", type=int, default=200)
    ap.add_argument("--latency", type=float, default=0.5, help="LLM latency L, seconds")
    ap.add_argument("--eval", type=float, default=0.25, help="evaluation time E, seconds")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--fault-rate", type=float, default=0.05)
    ap.add_argument("--floor", type=float, default=2.0, help="llm.timeout_floor, seconds")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    clean, n_clean = run_once(a, 0.0)
    faulty, n_faulty = run_once(a, a.fault_rate)
    print(f"L={a.latency}s E={a.eval}s llm.concurrency={a.concurrency} workers={a.workers} "
          f"programs={a.programs} timeout_floor={a.floor}s")
    print(f"no faults:          {clean:.2f} programs/s ({n_clean} requests)")
    print(f"{a.fault_rate:.0%} hanging:        {faulty:.2f} programs/s ({n_faulty} requests)")
    print(f"ratio faulty / clean = {faulty / clean:.3f}  (target >= 0.85)")


if __name__ == "__main__":
    main()
