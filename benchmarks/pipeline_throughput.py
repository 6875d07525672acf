"""Pipeline throughput vs the ideal min(concurrency / L, workers / E).

An OpenAI-compatible test server on 127.0.0.1 answers every request after a fixed latency L with a
full rewrite; the evaluator sleeps E seconds. The run uses the real LLM mutator, the real executor
(one subprocess per evaluation) and real SQLite storage. Throughput is measured in steady state
(between the first and last 10% of completions) and over the whole run, and printed as ratios to
the ideal; an "achievable" ideal that uses the evaluation time measured in the same run (E plus
process start-up) is printed too.

    .venv/bin/python benchmarks/pipeline_throughput.py            # L=1 s, E=0.5 s, 8 LLM slots, 4 workers
    .venv/bin/python benchmarks/pipeline_throughput.py --programs 400 --latency 0.5 --eval 0.25
    .venv/bin/python benchmarks/pipeline_throughput.py --eval 0.02 --jitter 0.5 --no-pace

``--jitter J`` adds to every reply an exponentially distributed delay of mean J seconds (seeded),
so replies come back out of step as real ones do; the ideal then uses the mean latency L + J.
``--no-pace`` and ``--results-first F`` set ``pipeline.pace`` and ``pipeline.results_first``
(what they cost in throughput, if anything: docs/benchmarks.md, "Paced requests").

It also prints the time from starting ``evoforge run`` (the installed command, a fresh process)
to the first LLM request arriving at the server (target <= 0.5 s), median of 5, and as a ratio to
a reference measured in the same run: a fresh interpreter importing the openai SDK plus the CLI's
own start-up (``evoforge --help``), the work no first request can skip. The first proposal is sent
while the initial program is evaluated (``pipeline.early_proposal``), so E does not add to it.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from evoforge import api
from evoforge.config import build_config
from evoforge.program import Status
from evoforge.storages import SQLiteStorage
from evoforge.testing.openai_server import ChatRequest, OpenAITestServer, reply

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


def rewrite(req: ChatRequest, jitter: float = 0.0, rng: random.Random | None = None):
    delay = rng.expovariate(1 / jitter) if jitter > 0 and rng is not None else 0.0
    return reply(f"```python\n# EVOLVE-BLOCK-START\nVALUE = {req.index + 1}\n"
                 "# EVOLVE-BLOCK-END\n```", prompt_tokens=900, completion_tokens=40,
                 delay=delay)


def time_to_first_request(prob: Path, tmp: Path, runs: int = 5) -> float:
    """Seconds from spawning `evoforge run` to the first chat request reaching the server."""
    evoforge = str(Path(sys.executable).with_name("evoforge"))
    times = []
    for i in range(runs):
        with OpenAITestServer(rewrite) as srv:
            env = {**os.environ, "EVOFORGE_BENCH_NO_KEY": "x"}
            argv = [evoforge, "run", str(prob), "--out", str(tmp / f"first{i}"), "-q",
                    "--max-programs", "2", "--set", "mutator.name=llm",
                    "--set", "mutator.edit_mode=rewrite", "--set", f"llm.base_url={srv.base_url}",
                    "--set", "llm.models=[bench]", "--set", "llm.api_key_env=EVOFORGE_BENCH_NO_KEY",
                    "--set", "evaluation.reverify=0"]
            t0 = time.monotonic()
            subprocess.run(argv, env=env, capture_output=True, check=True, timeout=120)
            times.append(srv.records[0].received_at - t0)
    return statistics.median(times)


def startup_floor(runs: int = 5) -> float:
    """The reference measured in the same run: a fresh interpreter importing the openai SDK
    (which the first request needs) plus evoforge's CLI start-up, sequentially (one GIL)."""
    evoforge = str(Path(sys.executable).with_name("evoforge"))

    def timed(argv: list[str]) -> float:
        t0 = time.monotonic()
        subprocess.run(argv, capture_output=True, check=True, timeout=120)
        return time.monotonic() - t0

    sdk = statistics.median(timed([sys.executable, "-c", "import openai"]) for _ in range(runs))
    cli = statistics.median(timed([evoforge, "--help"]) for _ in range(runs))
    return sdk + cli


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--programs", type=int, default=240)
    ap.add_argument("--latency", type=float, default=1.0, help="LLM latency L, seconds")
    ap.add_argument("--eval", type=float, default=0.5, help="evaluation time E, seconds")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--just-in-time", action=argparse.BooleanOptionalAction, default=True,
                    help="pipeline.just_in_time (default on)")
    ap.add_argument("--pace", action=argparse.BooleanOptionalAction, default=True,
                    help="pipeline.pace (default on)")
    ap.add_argument("--results-first", type=float, default=0.0,
                    help="pipeline.results_first (default 0)")
    ap.add_argument("--jitter", type=float, default=0.0,
                    help="mean of an exponential extra delay per reply, seconds (default 0)")
    a = ap.parse_args()

    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp, OpenAITestServer(
            lambda req: rewrite(req, a.jitter, rng), latency=a.latency) as srv:
        prob = Path(tmp) / "problem"
        prob.mkdir()
        (prob / "initial_program.py").write_text(INITIAL)
        (prob / "evaluator.py").write_text(EVALUATOR.format(E=a.eval))
        cfg = build_config({
            "max_programs": a.programs, "mutator": {"name": "llm", "edit_mode": "rewrite"},
            "llm": {"base_url": srv.base_url, "models": ["bench"], "concurrency": a.concurrency,
                    "request_timeout": 30, "api_key_env": "EVOFORGE_BENCH_NO_KEY"},
            # every child here is a new best (VALUE grows), so re-verification would double the
            # evaluations; the ideal counts one evaluation per program, so it is off for this benchmark
            "evaluation": {"workers": a.workers, "timeout": 30, "reverify": 0},
            "pipeline": {"just_in_time": a.just_in_time, "pace": a.pace,
                         "results_first": a.results_first},
        })
        outcome = api.evolve(prob, run_dir=Path(tmp) / "run", config=cfg)
        to_first = time_to_first_request(prob, Path(tmp))
        floor = startup_floor()
        with SQLiteStorage(Path(tmp) / "run" / "evoforge.db", readonly=True) as s:
            progs = [p for p in s.programs() if p.id != 0]
    assert outcome.ok, outcome.message
    ok = [p for p in progs if p.status is Status.OK]
    assert len(ok) == len(progs), "every child should evaluate ok in this benchmark"
    t = sorted(p.evaluated_at for p in progs if p.evaluated_at is not None)
    first = min(p.created_at for p in progs) - a.latency  # the first request left ~L before
    k = max(1, len(t) // 10)
    steady = (len(t) - 2 * k) / (t[-k - 1] - t[k])
    overall = len(t) / (t[-1] - first)
    mean_latency = a.latency + a.jitter
    ideal = min(a.concurrency / mean_latency, a.workers / a.eval)
    e_meas = statistics.median(p.eval_time for p in ok)
    achievable = min(a.concurrency / mean_latency, a.workers / e_meas)
    lag = statistics.mean(p.done_seq - p.mutation.view for p in progs
                          if p.done_seq is not None and p.mutation.view is not None)
    print(f"L={a.latency}s (+ jitter {a.jitter}s) E={a.eval}s llm.concurrency={a.concurrency} "
          f"evaluation.workers={a.workers} just_in_time={a.just_in_time} pace={a.pace} "
          f"results_first={a.results_first} programs={len(t)}")
    print(f"ideal min(conc/L, workers/E)        = {ideal:.2f} programs/s")
    print(f"measured eval time (median)         = {e_meas:.3f} s  -> achievable {achievable:.2f}/s")
    print(f"steady-state throughput             = {steady:.2f} programs/s")
    print(f"whole-run throughput (incl. ramp)   = {overall:.2f} programs/s")
    print(f"ratio steady / ideal                = {steady / ideal:.3f}")
    print(f"ratio steady / achievable           = {steady / achievable:.3f}")
    print(f"ratio whole-run / ideal             = {overall / ideal:.3f}")
    print(f"parent lag (mean results committed between a child's proposal and its result) "
          f"= {lag:.2f}")
    print(f"evoforge run -> first LLM request   = {to_first:.3f} s (median of 5; target <= 0.5 s)")
    print(f"  reference: import openai + CLI start = {floor:.3f} s -> ratio {to_first / floor:.2f}")


if __name__ == "__main__":
    main()
